"""The `headshot` command line."""

import hashlib
import json
import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from service.audit_commands import audit_app

app = typer.Typer(
    help="Disclosed AI headshots: generate with consent, score, and verify any photo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
credentials_app = typer.Typer(help="This installation's C2PA signing credentials.", no_args_is_help=True)
app.add_typer(credentials_app, name="credentials")
db_app = typer.Typer(help="The database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
keys_app = typer.Typer(
    help="API keys of the HTTP service (roles: admin, studio, verifier, auditor).", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")
models_app = typer.Typer(
    help="Models: tiny random ones for tests and demos, and the licence of each model part "
    "(insightface packs: non-commercial research only; IP-Adapter FaceID: research only).",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")
registry_app = typer.Typer(help="The registry of disclosed images (watermarks and fingerprints).", no_args_is_help=True)
app.add_typer(registry_app, name="registry")
app.add_typer(audit_app, name="audit")

console = Console(soft_wrap=True, emoji=False)  # ":AB:" in a fingerprint is not an emoji
errors = Console(stderr=True, soft_wrap=True, emoji=False)


def _settings():
    from service.settings import Settings

    return Settings()


def _fail(message: str) -> None:
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default HEADSHOT_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default HEADSHOT_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="API processes on this port (needs PostgreSQL if > 1).")] = 1,
) -> None:
    """Start the HTTP service (API docs at /docs)."""
    import uvicorn

    settings = _settings()
    if workers > 1 and settings.resolved_database_url.startswith("sqlite"):
        _fail("--workers > 1 needs a shared database: set HEADSHOT_DATABASE_URL to PostgreSQL")
    uvicorn.run(
        "service.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        # X-Forwarded-For is believed from HEADSHOT_TRUSTED_PROXIES only (uvicorn's own default trusts 127.0.0.1)
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or None,
    )


@app.command()
def worker(
    queues: Annotated[
        str, typer.Option(help="gpu (train, render), cpu (score), webhooks (deliveries), comma-separated.")
    ] = "gpu,cpu,webhooks",
    name: Annotated[str | None, typer.Option(help="This worker's name in job records (default host:pid).")] = None,
) -> None:
    """Run job stages from the Celery queues on HEADSHOT_BROKER_URL (one stage at a time per process)."""
    from service.database import DatabaseError
    from service.worker import QUEUES, run_worker

    settings = _settings()
    if not settings.broker_url:
        _fail("a worker needs a broker: set HEADSHOT_BROKER_URL, e.g. redis://127.0.0.1:6379/0")
    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()]
    unknown = sorted(set(chosen) - set(QUEUES))
    if not chosen or unknown:
        _fail(f"unknown queue {', '.join(unknown) or '(none)'}; use gpu, cpu, webhooks or several, comma-separated")
    try:
        run_worker(settings, chosen, name)
    except DatabaseError as exc:
        _fail(str(exc))


@app.command()
def disclose(
    input: Annotated[Path, typer.Argument(help="The AI-generated image (JPEG, PNG or WebP).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the disclosed image.")],
    reference: Annotated[
        list[Path] | None, typer.Option(help="A reference photo the image was made from (repeat per photo).")
    ] = None,
    generator: Annotated[str | None, typer.Option(help="The generator, e.g. 'Stable Diffusion XL 1.0'.")] = None,
    model_hash: Annotated[
        list[str] | None, typer.Option(help="NAME=HEX hash of a model used (repeat per model).")
    ] = None,
) -> None:
    """Sign INPUT with Content Credentials that declare it AI-generated, and write OUTPUT."""
    from provenance import CredentialsError, ImageInputError, disclose_image, parse_model_hashes
    from provenance.images import read_file

    settings = _settings()
    limits = settings.image_limits
    try:
        hashes = parse_model_hashes(model_hash or [])
        data = read_file(input, limits)
        references = []
        for path in reference or []:
            try:
                references.append(read_file(path, limits))
            except ImageInputError as exc:
                raise ImageInputError(f"reference {path}: {exc}") from None
        disclosure = disclose_image(
            data,
            settings.credentials.signing_identity(),
            settings.registry(),
            reference_hashes=[hashlib.sha256(reference).hexdigest() for reference in references],
            generator=generator,
            model_hashes=hashes,
            limits=limits,
        )
    except ImageInputError as exc:
        _fail(f"{input}: {exc}")
    except CredentialsError as exc:
        _fail(str(exc))
    _write_atomically(output, disclosure.data)
    mark = f"watermark {disclosure.payload:016x}" if disclosure.watermarked else "too small to watermark"
    console.print(
        f"disclosed [bold]{output}[/bold]: {disclosure.mime_type}, manifest {disclosure.manifest_label}, {mark}, "
        f"{len(references)} reference photo(s), credentials +{disclosure.overhead_bytes:,} bytes",
        highlight=False,
    )


@app.command()
def verify(
    files: Annotated[list[Path], typer.Argument(help="Photos to verify.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array, one object per file.")] = False,
) -> None:
    """Say for each photo whether it is AI-generated, and why. Exit 1 if any file could not be read."""
    from provenance import CredentialsError, VerifyFailure, verify_path

    settings = _settings()
    try:
        trust = settings.trust()
    except CredentialsError as exc:
        _fail(str(exc))
    registry, remote_manifests = settings.registry(), settings.remote_manifests()
    results = [verify_path(path, trust, settings.image_limits, registry, remote_manifests) for path in files]
    if as_json:
        print(json.dumps([result.model_dump(mode="json") for result in results], indent=2))
    else:
        for result in results:
            _print_verdict(result)
    if any(isinstance(result, VerifyFailure) for result in results):
        raise typer.Exit(1)


def _print_verdict(result) -> None:
    from provenance import VerifyFailure

    if isinstance(result, VerifyFailure):
        console.print(f"[bold]{result.file}[/bold]: [red]error[/red] {result.error}", highlight=False)
        return
    colour = {True: "magenta", False: "green", None: "yellow"}[result.ai_generated]
    console.print(f"[bold]{result.file}[/bold]: [{colour}]{result.label}[/{colour}]", highlight=False)
    console.print(f"  {result.summary}", highlight=False)
    for item in result.evidence:
        console.print(f"  - [{item.strength}] {item.source}: {item.detail}", highlight=False, markup=False)


@credentials_app.command("show")
def credentials_show() -> None:
    """Print the certificates' subjects, fingerprints and expiry dates (never a private key)."""
    from provenance import CredentialsError

    try:
        infos = _settings().credentials.describe()
    except CredentialsError as exc:
        _fail(str(exc))
    if not infos:
        console.print("no credentials yet: they are created on first use (e.g. `headshot disclose`)")
        return
    for info in infos:
        status = "[red]expired[/red]" if info.expired else "[green]valid[/green]"
        console.print(f"[bold]{info.role}[/bold]", highlight=False)
        console.print(f"  subject      {info.subject}", highlight=False, markup=False)
        console.print(f"  issuer       {info.issuer}", highlight=False, markup=False)
        console.print(f"  serial       {info.serial}", highlight=False)
        console.print(f"  SHA-256      {info.sha256_fingerprint}", highlight=False)
        console.print(
            f"  valid        {info.not_before:%Y-%m-%d %H:%M} to {info.not_after:%Y-%m-%d %H:%M} UTC ({status})",
            highlight=False,
        )


@credentials_app.command("init")
def credentials_init() -> None:
    """Create the local CA and signing certificate now, e.g. in the HEADSHOT_CREDENTIALS_DIR replicas share."""
    from provenance import CredentialsError

    settings = _settings()
    try:
        settings.credentials.signing_identity()
        infos = settings.credentials.describe()
    except CredentialsError as exc:
        _fail(str(exc))
    console.print(f"credentials in {settings.resolved_credentials_dir}:", highlight=False)
    for info in infos:
        console.print(f"  {info.role}: {info.sha256_fingerprint}, until {info.not_after:%Y-%m-%d}", highlight=False)


@credentials_app.command("rotate")
def credentials_rotate() -> None:
    """Issue a new signing certificate from the local CA; the old one is kept as retired."""
    from provenance import CredentialsError

    try:
        info = _settings().credentials.rotate()
    except CredentialsError as exc:
        _fail(str(exc))
    console.print(
        f"new signing certificate {info.sha256_fingerprint}, valid until {info.not_after:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )


@credentials_app.command("import")
def credentials_import(
    cert: Annotated[Path, typer.Argument(help="PEM certificate chain, signing certificate first.")],
    key: Annotated[Path, typer.Argument(help="PEM private key of the signing certificate (unencrypted).")],
) -> None:
    """Install an organisation's own signing certificate and key."""
    from provenance import CredentialsError

    settings = _settings()
    try:
        info = settings.credentials.import_certificate(cert.read_bytes(), key.read_bytes())
    except OSError as exc:
        _fail(f"cannot read {exc.filename}: {exc.strerror}")
    except CredentialsError as exc:
        _fail(str(exc))
    console.print(f"imported {info.subject}, valid until {info.not_after:%Y-%m-%d %H:%M} UTC", highlight=False)
    console.print(
        "readers trust it only if its root is among their trust anchors; on this installation add the root "
        "to the PEM file named by HEADSHOT_TRUST_ANCHORS",
        highlight=False,
    )


@app.command()
def score(
    candidates: Annotated[list[Path], typer.Argument(help="Candidate headshots to score.")],
    reference: Annotated[list[Path], typer.Option(help="A photo of the person (repeat per photo).")],
    top: Annotated[int, typer.Option(help="How many to keep.", min=1)] = 10,
    workers: Annotated[int, typer.Option(help="Processes to score with (0: one per core).", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array, one object per candidate.")] = False,
) -> None:
    """Score candidates for likeness to the reference photos and for artifacts; keep the best TOP."""
    from provenance import ImageInputError
    from provenance.images import decode_image, read_file
    from scoring.faces import FaceBackendError
    from scoring.score import ScoringError, build_identity, score_pack

    settings = _settings()
    limits = settings.image_limits

    def load(path: Path):
        return decode_image(read_file(path, limits), limits)

    try:
        backend = settings.face_analyser()
    except FaceBackendError as exc:
        _fail(str(exc))
    photos, unreadable = [], []
    for path in reference:
        try:
            photos.append((str(path), load(path)))
        except ImageInputError as exc:
            unreadable.append((str(path), f"cannot be read: {exc}"))
    loaded, failures = [], []
    for path in candidates:
        try:
            loaded.append((str(path), load(path), None))
        except ImageInputError as exc:
            failures.append({"file": str(path), "error": str(exc)})
    try:
        identity = build_identity(photos, backend)
    except ScoringError as exc:
        _fail(f"{exc}{''.join(f'; {name}: {reason}' for name, reason in unreadable)}")
    rejected = unreadable + [(r.name, r.reason) for r in identity.references if not r.accepted]

    from rich.progress import Progress

    with Progress(console=errors, transient=True, disable=len(loaded) <= 3) as bar:
        task = bar.add_task("scoring", total=len(loaded))
        try:
            reports = score_pack(
                loaded,
                identity,
                backend,
                top,
                progress=lambda done, total: bar.update(task, completed=done),
                workers=workers or len(os.sched_getaffinity(0)),
            )
        except FaceBackendError as exc:  # e.g. mediapipe is not installed
            _fail(str(exc))
    for name, reason in rejected:
        errors.print(f"reference {name} rejected: {reason}", highlight=False, markup=False)
    if as_json:
        print(json.dumps([report.as_dict() for report in reports] + failures, indent=2))
    else:
        _print_reports(reports, failures, identity)
    if failures:
        raise typer.Exit(1)


def _print_reports(reports, failures, identity) -> None:
    from rich.table import Table

    accepted = len(identity.accepted)
    console.print(f"identity from {accepted} reference photo(s), spread {identity.spread:.3f} ({identity.backend})")
    table = Table("rank", "file", "score", "likeness", "failed checks", "kept")
    for report in reports:
        likeness = report.likeness
        table.add_row(
            str(report.rank),
            report.file,
            f"{report.score:.1f}",
            f"{likeness.band} ({likeness.confidence:.2f}, d={likeness.distance:.3f})"
            + (f", near-copy of {likeness.near_copy_of}" if likeness.near_copy_of else "")
            if likeness
            else "no face",
            ", ".join(check.name for check in report.checks if not check.passed) or "-",
            ("yes" if report.passed else "yes (does not pass)")
            if report.kept
            else f"no, duplicate of {report.duplicate_of}"
            if report.duplicate_of
            else "no",
        )
    console.print(table)
    for failure in failures:
        console.print(f"[red]error[/red] {failure['file']}: {failure['error']}", highlight=False)
    console.print(reports[0].notes[0] if reports else "", highlight=False)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to HEADSHOT_DATABASE_URL (SQLite is upgraded on first use anyway)."""
    from sqlalchemy.exc import OperationalError

    from service.database import current_revision, new_engine, upgrade

    settings = _settings()
    engine = new_engine(settings.resolved_database_url)
    try:
        before = current_revision(engine)
        after = upgrade(engine)
    except OperationalError as exc:
        _fail(f"cannot reach the database {engine.url.render_as_string(hide_password=True)}: {exc.orig}")
    console.print(f"database schema at {after}" + (" (was already)" if before == after else f" (was {before})"))


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="admin, studio, verifier or auditor.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key (shown in the audit log).")],
    tenant: Annotated[str, typer.Option(help="The tenant whose subjects the key sees.")] = "default",
    expires_days: Annotated[int | None, typer.Option(help="Expire after this many days.", min=1)] = None,
) -> None:
    """Create a key and print it once (only its hash is stored). Names are unique among a tenant's active keys."""
    import datetime as dt

    from sqlmodel import Session, select

    from service.database import engine_for
    from service.deps import create_key, hash_key
    from service.tables import ApiKey

    settings = _settings()
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_days) if expires_days else None
    with Session(engine_for(settings.resolved_database_url)) as session:
        try:
            key = create_key(session, name, role, tenant, expires)
        except ValueError as exc:
            _fail(str(exc))
        key_id = session.exec(select(ApiKey.id).where(ApiKey.key_hash == hash_key(key))).one()
    errors.print(
        f"{role} key {key_id} for {name} (tenant {tenant}); the key is shown only now:", highlight=False, markup=False
    )
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Keys with their id, prefix, name, role, tenant and state (never the keys themselves)."""
    from sqlmodel import Session, select

    from service.database import engine_for
    from service.tables import ApiKey

    settings = _settings()
    with Session(engine_for(settings.resolved_database_url)) as session:
        for key in session.exec(select(ApiKey).order_by(ApiKey.created_at)).all():
            state = (
                "revoked" if key.revoked_at else f"expires {key.expires_at:%Y-%m-%d}" if key.expires_at else "active"
            )
            console.print(
                f"{key.id}  {key.prefix}…  {key.name:24} {key.role:9} tenant {key.tenant:12} {state}",
                highlight=False,
                markup=False,
            )


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id (see `keys list`), its prefix, or its name.")],
    tenant: Annotated[str | None, typer.Option(help="The tenant, when a name is used in several.")] = None,
) -> None:
    """Revoke one key: it is refused from now on. A name that fits several active keys revokes none."""
    import datetime as dt

    from sqlmodel import Session, or_, select

    from service.database import engine_for
    from service.tables import ApiKey

    settings = _settings()
    with Session(engine_for(settings.resolved_database_url)) as session:
        query = select(ApiKey).where(
            or_(ApiKey.id == key, ApiKey.prefix == key, ApiKey.name == key), ApiKey.revoked_at.is_(None)
        )
        if tenant is not None:
            query = query.where(ApiKey.tenant == tenant)
        matches = session.exec(query).all()
        if not matches:
            _fail(f"no active key with the id, prefix or name {key!r}" + (f" in tenant {tenant}" if tenant else ""))
        if len(matches) > 1:
            listed = "; ".join(f"{row.id} ({row.name}, tenant {row.tenant})" for row in matches)
            _fail(f"{len(matches)} active keys match {key!r}: {listed}; give the id of the one to revoke")
        row = matches[0]
        row.revoked_at = dt.datetime.now(dt.UTC)
        session.add(row)
        session.commit()
        console.print(f"revoked key {row.id} ({row.name}, tenant {row.tenant})", highlight=False, markup=False)


@models_app.command("tiny")
def models_tiny(directory: Annotated[Path, typer.Argument(help="Where to write the models.")]) -> None:
    """Write tiny random models (SDXL, IP-Adapter FaceID, insightface-shaped pack): for tests and demos only."""
    from generation.tiny import write_tiny_model
    from generation.tiny_faceid import write_tiny_faceid_adapter

    write_tiny_model(directory)
    write_tiny_faceid_adapter(directory / "ip-adapter-faceid", directory)
    console.print(
        f"wrote a tiny random SDXL model to {directory} (and {directory / 'tiny-sdxl.safetensors'}) and a tiny "
        f"random IP-Adapter FaceID to {directory / 'ip-adapter-faceid'}; they produce noise, not faces: use them "
        "to try the pipeline, not to make headshots",
        highlight=False,
    )
    try:
        from scoring.tiny_insightface import write_tiny_insightface_pack
    except ImportError:
        console.print('no tiny insightface pack: it needs onnx (`pip install -e ".[insightface]"`)', highlight=False)
        return
    write_tiny_insightface_pack(directory / "insightface")
    console.print(
        f"wrote a tiny insightface-shaped pack to {directory / 'insightface'} (it recognises nobody); try "
        f"HEADSHOT_INSIGHTFACE_PACK={directory / 'insightface'} headshot pack --model {directory} "
        f"--identity faceid --ip-adapter {directory / 'ip-adapter-faceid'} --reference PHOTO --out OUT",
        highlight=False,
    )


@models_app.command("licences")
def models_licences() -> None:
    """The licence of each model part headshot can use: choose the identity method knowingly."""
    from generation.faceid import LICENCES

    for part, licence in LICENCES.items():
        console.print(f"{part}: {licence}", highlight=False, markup=False)


ModelOption = Annotated[Path | None, typer.Option("--model", help="SDXL diffusers folder or .safetensors file.")]
ConfigOption = Annotated[Path | None, typer.Option("--config", help="Diffusers config folder for a single file.")]
ReferenceOption = Annotated[list[Path], typer.Option("--reference", help="A photo of the person (repeat).")]
LicensedOption = Annotated[
    list[Path] | None, typer.Option("--licensed", help="A reference whose credentials forbid training, licensed.")
]
LicenceNoteOption = Annotated[str | None, typer.Option("--licence-note", help="The licence for --licensed photos.")]


class ClassWord(StrEnum):
    person = "person"
    woman = "woman"
    man = "man"


class ExportFormat(StrEnum):
    kohya = "kohya"


StepsOption = Annotated[
    int | None, typer.Option(min=1, help="Training steps (default: scaled by the number of accepted photos).")
]
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, max=16, help="Photos per training step (their latents are cached).")
]
ClassWordOption = Annotated[
    ClassWord, typer.Option("--class-word", help="Who the photos show; the caption is 'a photo of hsk CLASS-WORD'.")
]


class Identity(StrEnum):
    lora = "lora"
    faceid = "faceid"
    hybrid = "hybrid"


IdentityOption = Annotated[
    Identity,
    typer.Option(
        "--identity",
        help="lora: train an identity LoRA; faceid: no training, IP-Adapter FaceID on the ArcFace embedding "
        "(needs --ip-adapter and HEADSHOT_INSIGHTFACE_PACK; research-only weights); hybrid: both.",
    ),
]
IPAdapterOption = Annotated[
    Path | None,
    typer.Option("--ip-adapter", help="IP-Adapter FaceID weights for SDXL, file or folder (HEADSHOT_IP_ADAPTER)."),
]
AdapterScaleOption = Annotated[
    float | None,
    typer.Option("--adapter-scale", min=0, max=2, help="IP-Adapter strength (default: faceid 1.0, hybrid 0.5)."),
]
ExportOption = Annotated[
    ExportFormat | None,
    typer.Option("--export", help="Also write the LoRA as kohya (what AUTOMATIC1111 and ComfyUI load)."),
]


@app.command()
def train(
    reference: ReferenceOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for the LoRA and its checkpoints.")],
    model: ModelOption = None,
    config: ConfigOption = None,
    steps: StepsOption = None,
    batch_size: BatchSizeOption = 2,
    class_word: ClassWordOption = ClassWord.person,
    rank: Annotated[int, typer.Option(min=1)] = 16,
    alpha: Annotated[int, typer.Option(min=1)] = 16,
    learning_rate: Annotated[float, typer.Option("--lr", min=0)] = 1e-4,
    resolution: Annotated[int, typer.Option(min=32)] = 1024,
    seed: int = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = 100,
    export: ExportOption = None,
    licensed: LicensedOption = None,
    licence_note: LicenceNoteOption = None,
) -> None:
    """Train an identity LoRA from the reference photos (resumes from the last checkpoint in --out)."""
    from generation.pack import PackError, accept_references, model_record
    from generation.training import LikenessCheck, TrainingConfig, TrainingError, train_identity_lora

    settings = _settings()
    training = TrainingConfig(
        steps=steps,
        rank=rank,
        alpha=alpha,
        learning_rate=learning_rate,
        resolution=resolution,
        seed=seed,
        class_word=class_word.value,
        checkpoint_every=checkpoint_every,
        batch_size=batch_size,
        gradient_checkpointing=settings.gradient_checkpointing,
    )
    loaded = _load_model(settings, model, config)
    backend = settings.face_analyser()
    try:
        identity, decisions, accepted = accept_references(
            _reference_inputs(reference, licensed, licence_note, settings), _pack_provenance(settings), backend
        )
    except PackError as exc:
        _fail(str(exc))
    _print_decisions(decisions)
    with _training_progress() as on_step:
        try:
            result = train_identity_lora(
                loaded.pipeline,
                [image for _, image in accepted],
                out,
                training,
                on_step,
                record=model_record(loaded, decisions),
                check=LikenessCheck(identity, backend),
                names=[reference.name for reference, _ in accepted],
            )
        except TrainingError as exc:
            _fail(str(exc))
    chosen = json.loads((out / "training.json").read_text())["chosen_checkpoint"]
    console.print(
        f"LoRA {result.lora_path} (sha256 {result.lora_sha256}), {result.steps_done} steps, loss "
        f"{result.losses[0]:.4f} -> {result.losses[-1]:.4f}"
        + (f", resumed from step {result.resumed_from}" if result.resumed_from else "")
        + f"; checkpoint of step {chosen['step']} kept ({chosen['reason']})",
        highlight=False,
    )
    if export is ExportFormat.kohya:
        _export_kohya(out, loaded)


def _export_kohya(lora_dir: Path, loaded) -> None:
    from generation.kohya import export_kohya

    console.print(f"kohya LoRA {export_kohya(lora_dir, loaded.pipeline.unet.config)}", highlight=False)


@app.command()
def pack(
    reference: ReferenceOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for the pack.")],
    model: ModelOption = None,
    config: ConfigOption = None,
    styles: Annotated[str | None, typer.Option(help="Comma-separated preset names (default: all).")] = None,
    count: Annotated[int, typer.Option(help="Images per style.", min=1)] = 4,
    steps: StepsOption = None,
    batch_size: BatchSizeOption = 2,
    class_word: ClassWordOption = ClassWord.person,
    inference_steps: Annotated[int, typer.Option(help="Denoising steps per image.", min=1)] = 30,
    size: Annotated[int, typer.Option(help="Image size in px.", min=32)] = 1024,
    seed: int = 0,
    top: Annotated[int, typer.Option(help="How many images to keep.", min=1)] = 10,
    identity: IdentityOption = Identity.lora,
    ip_adapter: IPAdapterOption = None,
    adapter_scale: AdapterScaleOption = None,
    export: ExportOption = None,
    licensed: LicensedOption = None,
    licence_note: LicenceNoteOption = None,
) -> None:
    """Train (lora, hybrid), render, score and disclose a headshot pack: images, report.json and index.html."""
    _run_pack(
        reference,
        out,
        model,
        config,
        styles,
        count,
        steps,
        inference_steps,
        size,
        seed,
        top,
        licensed,
        licence_note,
        batch_size=batch_size,
        class_word=class_word.value,
        export=export,
        identity=(identity.value, ip_adapter, adapter_scale),
    )


@app.command()
def generate(
    reference: ReferenceOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for the images, report.json and index.html.")],
    lora: Annotated[
        Path | None, typer.Option("--lora", help="Folder of a LoRA made by `headshot train` (lora, hybrid).")
    ] = None,
    model: ModelOption = None,
    config: ConfigOption = None,
    styles: Annotated[str | None, typer.Option(help="Comma-separated preset names (default: all).")] = None,
    count: Annotated[int, typer.Option(help="Images per style.", min=1)] = 4,
    steps: Annotated[int, typer.Option(help="Denoising steps per image.", min=1)] = 30,
    size: Annotated[int, typer.Option(help="Image size in px.", min=32)] = 1024,
    seed: int = 0,
    top: Annotated[int, typer.Option(help="How many images to keep.", min=1)] = 10,
    identity: IdentityOption = Identity.lora,
    ip_adapter: IPAdapterOption = None,
    adapter_scale: AdapterScaleOption = None,
    class_word: ClassWordOption = ClassWord.person,
) -> None:
    """Render, score and disclose headshots with a trained LoRA and/or IP-Adapter FaceID (no training)."""
    if identity is not Identity.faceid and lora is None:
        _fail(f"--identity {identity.value} renders with a trained LoRA: pass --lora DIR (or use --identity faceid)")
    if identity is Identity.faceid and lora is not None:
        _fail("--identity faceid uses no LoRA: drop --lora, or use --identity hybrid")
    _run_pack(
        reference,
        out,
        model,
        config,
        styles,
        count,
        1,
        steps,
        size,
        seed,
        top,
        None,
        None,
        trained_lora=lora,
        class_word=class_word.value,
        identity=(identity.value, ip_adapter, adapter_scale),
    )


def _run_pack(
    reference,
    out,
    model,
    config,
    styles,
    count,
    steps,
    inference_steps,
    size,
    seed,
    top,
    licensed,
    licence_note,
    trained_lora=None,
    batch_size=2,
    class_word="person",
    export=None,
    identity=("lora", None, None),
) -> None:
    from rich.progress import Progress

    from generation.faceid import IdentityError
    from generation.pack import PackError, PackSettings, make_pack
    from generation.presets import PresetError, load_presets, select_presets
    from generation.training import TrainingConfig

    settings = _settings()
    try:
        presets = select_presets(load_presets(settings.presets_file), styles.split(",") if styles else None)
    except PresetError as exc:
        _fail(str(exc))
    try:
        method = settings.identity_method(*identity)
    except IdentityError as exc:
        _fail(str(exc))
    if export is not None and not method.trains_lora:
        _fail(f"--export {export.value} exports the identity LoRA, which --identity {method.name} does not train")
    loaded = _load_model(settings, model, config)
    training = TrainingConfig(
        steps=steps,
        resolution=size,
        seed=seed,
        batch_size=batch_size,
        class_word=class_word,
        gradient_checkpointing=settings.gradient_checkpointing,
    )
    pack_settings = PackSettings(presets, count, inference_steps, size, seed, top, training, method)
    with Progress(console=errors, transient=True) as bar:
        training_task = bar.add_task("training", total=None, visible=trained_lora is None and method.trains_lora)
        render_task = bar.add_task("rendering", total=count * len(presets))
        try:
            report = make_pack(
                loaded,
                _reference_inputs(reference, licensed, licence_note, settings),
                out,
                pack_settings,
                _pack_provenance(settings),
                settings.face_analyser(),
                on_training=lambda p: bar.update(
                    training_task, completed=p.step, total=p.total, **_loss_description(p)
                ),
                on_image=lambda done, total: bar.update(render_task, completed=done),
                trained_lora=trained_lora,
            )
        except PackError as exc:
            _fail(str(exc))
    _print_decisions(report["references"])
    if export is ExportFormat.kohya:
        _export_kohya(Path(out) / "lora", loaded)
    kept = [image for image in report["images"] if image["kept"]]
    console.print(
        f"{out}: {len(report['images'])} disclosed images made by {report['method']}, {len(kept)} kept "
        f"({sum(image['passed'] for image in kept)} passing the quality gate); report.json and index.html written",
        highlight=False,
    )


def _load_model(settings, model: Path | None, config: Path | None):
    from generation.models import ModelError

    try:
        return settings.load_sdxl(model, config)
    except ModelError as exc:
        _fail(str(exc))


def _reference_inputs(paths: list[Path], licensed: list[Path] | None, note: str | None, settings):
    from generation.pack import ReferenceInput
    from provenance import ImageInputError
    from provenance.images import read_file

    licensed = {path.resolve() for path in licensed or []}
    if licensed and not note:
        _fail("--licensed needs --licence-note TEXT saying under which licence the photos are used")
    inputs = []
    for path in paths:
        try:
            data = read_file(path, settings.image_limits)
        except ImageInputError as exc:
            _fail(f"reference {path}: {exc}")
        inputs.append(ReferenceInput(str(path), data, note if path.resolve() in licensed else None))
    return inputs


def _pack_provenance(settings):
    from generation.pack import Provenance

    return Provenance(
        settings.credentials.signing_identity(), settings.registry(), settings.trust(), settings.image_limits
    )


def _print_decisions(decisions: list[dict]) -> None:
    for decision in decisions:
        mark = "accepted" if decision["accepted"] else "[red]rejected[/red]"
        console.print(f"reference {decision['name']}: {mark} ({decision['reason']})", highlight=False)


def _training_progress():
    from contextlib import contextmanager

    from rich.progress import Progress

    @contextmanager
    def progress():
        with Progress(console=errors, transient=True) as bar:
            task = bar.add_task("training", total=None)
            yield lambda p: bar.update(task, completed=p.step, total=p.total, **_loss_description(p))

    return progress()


def _loss_description(progress) -> dict:
    """The bar's label, updated when training reads the loss back from the device (every few steps)."""
    return {"description": f"training loss {progress.loss:.4f}"} if progress.loss is not None else {}


@registry_app.command("stats")
def registry_stats() -> None:
    """How many disclosed images are registered, and how big the in-memory index is."""
    settings = _settings()
    stats = settings.registry().stats()
    console.print(f"database        {settings.resolved_database_url}", highlight=False)
    console.print(
        f"images          {stats['images']:,} ({stats['watermarked']:,} watermarked, "
        f"{stats['with_face_hash']:,} with a face hash)",
        highlight=False,
    )
    console.print(
        f"formats         {', '.join(f'{k} {v:,}' for k, v in stats['formats'].items()) or '-'}", highlight=False
    )
    console.print(
        f"registered      {stats['first_registered'] or '-'} to {stats['last_registered'] or '-'}", highlight=False
    )
    console.print(f"index in memory {stats['index_bytes'] / 1e6:.1f} MB", highlight=False)


@registry_app.command("lookup")
def registry_lookup(
    file: Annotated[Path, typer.Argument(help="A photo, possibly a stripped or re-encoded copy.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find the registered disclosure FILE is a copy of, by watermark and fingerprints."""
    from provenance import ImageInputError
    from provenance.images import decode_image, read_file
    from provenance.soft_binding import find_disclosure

    settings = _settings()
    try:
        image = decode_image(read_file(file, settings.image_limits), settings.image_limits)
    except ImageInputError as exc:
        _fail(f"{file}: {exc}")
    result = find_disclosure(image, settings.registry())
    entry = result.entry
    if as_json:
        record = (
            None
            if entry is None
            else {
                "manifest_label": entry.manifest_label,
                "registered_at": entry.created_at.isoformat(),
                "signed_sha256": entry.signed_sha256,
                "mime_type": entry.mime_type,
                "watermark_payload": f"{entry.payload:016x}",
                "manifest": entry.manifest,
            }
        )
        findings = [vars(finding) for finding in result.findings]
        print(json.dumps({"file": str(file), "match": record, "findings": findings}, indent=2))
    elif entry is None:
        console.print(f"{file}: no registered disclosure matches", highlight=False)
    else:
        console.print(f"{file}: copy of [bold]{entry.manifest_label}[/bold]", highlight=False)
        console.print(
            f"  registered {entry.created_at:%Y-%m-%d %H:%M} UTC, {entry.mime_type}, sha256 {entry.signed_sha256}",
            highlight=False,
        )
    if not as_json:
        for finding in result.findings:
            console.print(f"  - [{finding.strength}] {finding.source}: {finding.detail}", markup=False, highlight=False)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target and rename, so a reader never sees a half-written file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        _fail(f"cannot write {path}: {exc.strerror}")
