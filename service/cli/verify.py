"""`headshot disclose`, `headshot verify` and `headshot registry ...`: Content Credentials in and out."""

import hashlib
import json
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import app, console, fail, group, read_image, reports_errors, services, write_file

registry_app = group("registry", "The registry of disclosed images (watermarks and fingerprints).")


@app.command()
@reports_errors
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
    from provenance import ImageInputError, disclose_image, parse_model_hashes

    command_services = services()
    limits = command_services.settings.image_limits
    try:
        hashes = parse_model_hashes(model_hash or [])
    except ValueError as exc:
        fail(f"--model-hash: {exc}")
    data = read_image(input, limits)
    references = [read_image(path, limits, "reference ") for path in reference or []]
    try:
        disclosure = disclose_image(
            data,
            command_services.credentials.signing_identity(),
            command_services.registry,
            reference_hashes=[hashlib.sha256(reference).hexdigest() for reference in references],
            generator=generator,
            model_hashes=hashes,
            limits=limits,
        )
    except ImageInputError as exc:
        raise ImageInputError(f"{input}: {exc}", exc.kind) from None
    write_file(output, disclosure.data)
    mark = f"watermark {disclosure.payload:016x}" if disclosure.watermarked else "too small to watermark"
    console.print(
        f"disclosed [bold]{output}[/bold]: {disclosure.mime_type}, manifest {disclosure.manifest_label}, {mark}, "
        f"{len(references)} reference photo(s), credentials +{disclosure.overhead_bytes:,} bytes",
        highlight=False,
    )


@app.command()
@reports_errors
def verify(
    files: Annotated[list[Path], typer.Argument(help="Photos to verify.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array, one object per file.")] = False,
) -> None:
    """Say for each photo whether it is AI-generated, and why. Exit 1 if any file could not be read."""
    from provenance import VerifyFailure, verify_path

    command_services = services()
    trust = command_services.trust()
    registry, remote_manifests = command_services.registry, command_services.remote_manifests
    limits = command_services.settings.image_limits
    results = [verify_path(path, trust, limits, registry, remote_manifests) for path in files]
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


@registry_app.command("stats")
@reports_errors
def registry_stats() -> None:
    """How many disclosed images are registered, and how big the in-memory index is."""
    command_services = services()
    stats = command_services.registry.stats()
    console.print(f"database        {command_services.settings.resolved_database_url}", highlight=False)
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
@reports_errors
def registry_lookup(
    file: Annotated[Path, typer.Argument(help="A photo, possibly a stripped or re-encoded copy.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Find the registered disclosure FILE is a copy of, by watermark and fingerprints."""
    from provenance import ImageInputError
    from provenance.images import decode_image
    from provenance.soft_binding import find_disclosure

    command_services = services()
    limits = command_services.settings.image_limits
    data = read_image(file, limits)
    try:
        image = decode_image(data, limits)
    except ImageInputError as exc:
        raise ImageInputError(f"{file}: {exc}", exc.kind) from None
    result = find_disclosure(image, command_services.registry)
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
