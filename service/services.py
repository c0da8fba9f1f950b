"""The collaborators a process works with, built once from the settings.

The API builds one `Services` when the app is created (and loads the registry's index in its lifespan), a
`headshot worker` one per process, each CLI command one for itself. Everything expensive is built on first
use and then kept: the database engine, the soft-binding registry and its in-memory index, the face backend
(dlib's or insightface's models are loaded once per process, not once per upload), storage, the signer.
"""

import threading
from functools import cached_property
from pathlib import Path

from provenance import CredentialStore, TrustAnchors
from service.settings import Settings


class Services:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self._face_lock = threading.Lock()

    @cached_property
    def engine(self):
        """The database engine, its schema checked (an embedded SQLite database is brought up to date)."""
        from service.database import engine_for

        return engine_for(self.settings.resolved_database_url)

    @cached_property
    def registry(self):
        """The soft-binding registry in the configured database, with its in-memory fingerprint index."""
        from service.registry import DatabaseRegistry

        return DatabaseRegistry(self.engine, self.settings.registry_max_staleness)

    @cached_property
    def storage(self):
        """Where uploads, LoRA weights and outputs live (service/storage.py)."""
        from service.storage import DirectoryStorage

        return DirectoryStorage(self.settings.resolved_storage_dir)

    @cached_property
    def credentials(self) -> CredentialStore:
        """This installation's signing credentials (created on first use)."""
        from service.files import private_directory

        settings = self.settings
        private_directory(settings.resolved_credentials_dir)
        return CredentialStore(
            settings.resolved_credentials_dir,
            signer_name=settings.signer_name,
            organization=settings.signer_organization,
            lifetime=settings.certificate_lifetime_days,
            timestamp_url=settings.timestamp_url,
            signing_callback=settings.signing_callback,
            signing_chain=settings.signing_chain,
        )

    @cached_property
    def audit_keys(self):
        """The installation's audit key, which signs exports and training records (service/signed_records.py)."""
        from service.signed_records import AuditKeyStore

        return AuditKeyStore(self.settings.resolved_credentials_dir)

    def trust(self) -> TrustAnchors:
        """The C2PA trust list (unless switched off; a newer one `headshot trust update` installed wins), the
        local root (once created) and the operator's extra anchors; read anew on each call, so that a root
        created, an anchor added or a list updated after start counts."""
        from provenance.trust import official_trust_list

        settings = self.settings
        anchors = official_trust_list(settings.trust_lists_dir) if settings.c2pa_trust_list else TrustAnchors()
        return anchors + self.credentials.trust_anchors(extra=settings.trust_anchors)

    def verify_upload(self, data: bytes, name: str):
        """The verdict on one uploaded photo, with this server's trust anchors, registry and remote-manifest rule."""
        from provenance import verify_image

        return verify_image(
            data,
            self.trust(),
            self.settings.image_limits,
            name=name,
            registry=self.registry,
            remote_manifests=self.remote_manifests,
        )

    @cached_property
    def remote_manifests(self):
        """The fetcher of remote manifests from the allowed hosts, or None: fetching is off (the default)."""
        from provenance.remote_manifests import RemoteManifestFetcher

        return RemoteManifestFetcher.for_hosts(self.settings.remote_manifest_hosts)

    @property
    def face_backend(self):
        """The configured face backend, loaded once per process; insightface needs HEADSHOT_INSIGHTFACE_PACK."""
        with self._face_lock:
            if "_face_backend" not in self.__dict__:
                self.__dict__["_face_backend"] = self._load_face_backend()
            return self.__dict__["_face_backend"]

    def _load_face_backend(self):
        settings = self.settings
        if settings.face_backend == "insightface":
            from scoring.faces import FaceBackendError
            from scoring.insightface_backend import InsightFaceBackend

            if settings.insightface_pack is None:
                raise FaceBackendError(
                    "HEADSHOT_FACE_BACKEND=insightface needs HEADSHOT_INSIGHTFACE_PACK, the directory of a model pack"
                )
            return InsightFaceBackend(settings.insightface_pack)
        from scoring.faces import DlibBackend

        return DlibBackend(use_68_landmarks=settings.dlib_68_landmarks)

    def identity_method(self, name: str = "lora", ip_adapter: Path | None = None, adapter_scale: float | None = None):
        """How a pack carries the person's identity: `name` with this installation's adapter and insightface pack
        (`ip_adapter` overrides HEADSHOT_IP_ADAPTER). Checked at once: a missing file is an IdentityError."""
        from generation.faceid import IdentityMethod

        settings = self.settings
        method = IdentityMethod(name, ip_adapter or settings.ip_adapter, settings.insightface_pack, adapter_scale)
        method.check()
        return method

    def load_sdxl(self, model: Path | None = None, config: Path | None = None):
        """Load the SDXL model given on the command line, or HEADSHOT_SDXL_MODEL."""
        from generation.models import MemoryOptions, ModelError, load_model
        from service.files import private_directory

        settings = self.settings
        path = model or settings.sdxl_model
        if path is None:
            raise ModelError(
                "no SDXL model configured: pass --model DIR or set HEADSHOT_SDXL_MODEL to a local diffusers folder "
                "or .safetensors file (`headshot models tiny DIR` writes a tiny random one for trying things out)"
            )
        return load_model(
            path,
            config=config or settings.sdxl_config,
            device=settings.device,
            dtype=settings.dtype,
            memory=MemoryOptions(
                vae_tiling=settings.vae_tiling, vae_slicing=settings.vae_slicing, cpu_offload=settings.cpu_offload
            ),
            cache_dir=private_directory(settings.data_dir / "cache"),
        )

    @cached_property
    def limiters(self):
        """The API's rate limits: per key, for the public page, for failed authentications."""
        from service.limits import rate_limiter
        from service.request_guard import Limiters

        settings = self.settings
        redis_url = settings.resolved_redis_url
        return Limiters(
            keys=rate_limiter(settings.rate_limit_per_minute, "key", redis_url),
            public=rate_limiter(settings.public_rate_limit_per_minute, "public", redis_url),
            auth_failures=rate_limiter(settings.auth_failures_per_minute, "auth-failure", redis_url),
        )
