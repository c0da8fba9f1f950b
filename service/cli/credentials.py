"""`headshot credentials ...`: this installation's C2PA signing credentials."""

from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import console, group, read_bytes, reports_errors, services

credentials_app = group("credentials", "This installation's C2PA signing credentials.")


@credentials_app.command("show")
@reports_errors
def credentials_show() -> None:
    """Print the certificates' subjects, fingerprints and expiry dates (never a private key)."""
    infos = services().credentials.describe()
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
@reports_errors
def credentials_init() -> None:
    """Create the local CA and signing certificate now, e.g. in the HEADSHOT_CREDENTIALS_DIR replicas share."""
    command_services = services()
    command_services.credentials.signing_identity()
    infos = command_services.credentials.describe()
    console.print(f"credentials in {command_services.settings.resolved_credentials_dir}:", highlight=False)
    for info in infos:
        console.print(f"  {info.role}: {info.sha256_fingerprint}, until {info.not_after:%Y-%m-%d}", highlight=False)


@credentials_app.command("rotate")
@reports_errors
def credentials_rotate() -> None:
    """Issue a new signing certificate from the local CA; the old one is kept as retired."""
    info = services().credentials.rotate()
    console.print(
        f"new signing certificate {info.sha256_fingerprint}, valid until {info.not_after:%Y-%m-%d %H:%M} UTC",
        highlight=False,
    )


@credentials_app.command("import")
@reports_errors
def credentials_import(
    cert: Annotated[Path, typer.Argument(help="PEM certificate chain, signing certificate first.")],
    key: Annotated[Path, typer.Argument(help="PEM private key of the signing certificate (unencrypted).")],
) -> None:
    """Install an organisation's own signing certificate and key."""
    info = services().credentials.import_certificate(read_bytes(cert), read_bytes(key))
    console.print(f"imported {info.subject}, valid until {info.not_after:%Y-%m-%d %H:%M} UTC", highlight=False)
    console.print(
        "readers trust it only if its root is among their trust anchors; on this installation add the root "
        "to the PEM file named by HEADSHOT_TRUST_ANCHORS",
        highlight=False,
    )
