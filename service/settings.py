"""The one settings class: every option is a `HEADSHOT_` environment variable."""

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from provenance import ImageLimits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEADSHOT_", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Database, signing credentials, uploads and outputs.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite file in data_dir.")
    storage_dir: Path | None = Field(
        None, description="Uploads, LoRA weights and outputs, shared by every replica and worker; default: data_dir."
    )
    credentials_dir: Path | None = Field(
        None, description="Signing credentials, read by every replica; default: data_dir/credentials."
    )
    work_dir: Path | None = Field(None, description="A worker's local scratch space; default: data_dir/work.")

    broker_url: str | None = Field(
        None, description="Celery broker (redis://...): jobs run on `headshot worker`s instead of in-process."
    )
    redis_url: str | None = Field(
        None, description="Redis for rate limits shared by all replicas; default: broker_url when it is Redis."
    )
    lease_seconds: float = Field(
        60.0, gt=0, description="A running job's lease; a worker silent for this long loses the job to another."
    )
    max_attempts: int = Field(
        3, ge=1, description="Attempts a stage gets: workers it may lose before the job is marked interrupted."
    )
    redelivery_seconds: float = Field(
        600.0, gt=0, description="Broker redelivers a message whose worker died before claiming its job after this."
    )
    registry_max_staleness: float = Field(
        1.0, ge=0, description="Seconds a replica's fingerprint index may lag rows other replicas added."
    )

    signer_name: str = Field("headshot disclosure signer", description="Common name of the signing certificate.")
    signer_organization: str = Field("headshot", description="Organisation named in the local CA and signer.")
    certificate_lifetime_days: int = Field(90, ge=1, description="Lifetime of locally issued signing certificates.")
    timestamp_url: str | None = Field(None, description="RFC 3161 timestamp authority; signing fails if unreachable.")
    trust_anchors: Path | None = Field(None, description="PEM file of extra trust anchors (source `user`).")
    c2pa_trust_list: bool = Field(
        True,
        description="Trust the official C2PA trust list and time-stamping authorities (shipped with headshot; "
        "`headshot trust update FILE` installs a newer list).",
    )
    signing_callback: str | None = Field(
        None, description="'module:function' that signs bytes with a key held in a KMS/HSM."
    )
    signing_chain: Path | None = Field(None, description="PEM certificate chain that goes with signing_callback.")

    face_backend: str = Field("dlib", pattern="^(dlib|insightface)$", description="Face analysis: dlib or insightface.")
    insightface_pack: Path | None = Field(None, description="Directory of an insightface model pack (ONNX files).")
    dlib_68_landmarks: bool = Field(
        False, description="Use dlib's 68-point landmarks (their training data restricts commercial use)."
    )

    sdxl_model: Path | None = Field(None, description="SDXL weights: a diffusers folder or a single .safetensors.")
    sdxl_config: Path | None = Field(None, description="Local diffusers config folder for a single-file checkpoint.")
    ip_adapter: Path | None = Field(
        None,
        description="IP-Adapter FaceID weights for SDXL (a file, or a folder holding one) for the faceid and hybrid "
        "identity methods; research use only. Needs insightface_pack for the ArcFace embedding.",
    )
    device: str | None = Field(None, description="cuda, cuda:N or cpu; default: CUDA when available.")
    dtype: str | None = Field(
        None, description="bfloat16, float16 or float32; default: bf16/fp16 on CUDA, fp32 on CPU."
    )
    vae_tiling: bool = Field(False, description="Decode the VAE in tiles (less GPU memory).")
    vae_slicing: bool = Field(False, description="Decode a batch one image at a time (less GPU memory).")
    cpu_offload: bool = Field(
        False, description="Keep idle sub-models on the CPU (CUDA only; slower, far less memory)."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute UNet activations while training a LoRA (about 30% slower, far less memory)."
    )
    presets_file: Path | None = Field(None, description="TOML file of extra or overriding style presets.")

    max_upload_bytes: int = Field(25_000_000, ge=1, description="Largest accepted file, in bytes.")
    max_pixels: int = Field(50_000_000, ge=1, description="Largest accepted decoded image, in pixels.")

    public_verify_page: bool = Field(True, description="Serve the public upload page at /verify.")
    rate_limit_per_minute: int = Field(120, ge=1, description="Requests per minute per API key (429 beyond).")
    public_rate_limit_per_minute: int = Field(20, ge=1, description="Uploads per minute per address on /verify.")
    max_active_jobs: int = Field(20, ge=1, description="Queued plus running jobs per tenant (429 beyond).")
    auth_failures_per_minute: int = Field(
        10, ge=1, description="Requests without a valid API key per minute per address (429 beyond)."
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated addresses or networks of reverse proxies whose X-Forwarded-For is believed; "
        "default: none (the connection's own address counts).",
    )
    remote_manifest_hosts: str = Field(
        "",
        description="Comma-separated host names whose remote Content Credentials `verify` may fetch; "
        "default: none (nothing is ever fetched).",
    )

    audit_anchor_seconds: float = Field(
        3600.0, gt=0, description="Workers have the audit chain's head time-stamped this often (with timestamp_url)."
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts webhooks may reach even on loopback, private or link-local addresses.",
    )
    webhook_timeout_seconds: float = Field(10.0, gt=0, description="Connect and read timeout of one delivery.")
    webhook_retry_seconds: float = Field(
        30.0, gt=0, description="Wait before retrying a failed delivery; doubles at each attempt (at most 6 h)."
    )
    webhook_max_attempts: int = Field(10, ge=1, description="Attempts after which a delivery is marked failed.")

    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("webhook_allowed_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            return [host.strip() for host in value.split(",") if host.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'headshot.db'}"

    @property
    def resolved_storage_dir(self) -> Path:
        return self.storage_dir or self.data_dir

    @property
    def resolved_credentials_dir(self) -> Path:
        return self.credentials_dir or self.data_dir / "credentials"

    @property
    def resolved_work_dir(self) -> Path:
        return self.work_dir or self.data_dir / "work"

    @property
    def resolved_redis_url(self) -> str | None:
        if self.redis_url:
            return self.redis_url
        if self.broker_url and self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return None

    @property
    def image_limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_upload_bytes, max_pixels=self.max_pixels)

    @property
    def trust_lists_dir(self) -> Path:
        """Where `headshot trust update` keeps a newer C2PA trust list than the one shipped."""
        return self.resolved_credentials_dir / "trust-lists"
