"""`headshot trust ...`: the anchors `verify` trusts, and where each comes from."""

import json
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import console, fail, group, reports_errors, services

trust_app = group("trust", "The trust anchors of `verify`: the C2PA trust list, this installation's CA, yours.")


@trust_app.command("list")
@reports_errors
def trust_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Every anchor in use: subject, SHA-256 fingerprint, expiry, source and purpose."""
    command_services = services()
    anchors = [anchor.describe() for anchor in command_services.trust().anchors]
    if as_json:
        print(json.dumps(anchors, indent=2))
        return
    if not command_services.settings.c2pa_trust_list:
        console.print("the C2PA trust list is switched off (HEADSHOT_C2PA_TRUST_LIST=false)")
    for anchor in anchors:
        expiry = "[red]expired[/red]" if anchor["expired"] else f"until {anchor['not_after'][:10]}"
        console.print(f"[bold]{anchor['source']}[/bold] ({anchor['purpose']}), {expiry}", highlight=False)
        console.print(f"  subject  {anchor['subject']}", highlight=False, markup=False)
        console.print(f"  SHA-256  {anchor['sha256_fingerprint']}", highlight=False)
    counts = {
        source: sum(a["source"] == source for a in anchors) for source in dict.fromkeys(a["source"] for a in anchors)
    }
    console.print(
        ", ".join(f"{count} from {source}" for source, count in counts.items()) or "no anchors", highlight=False
    )


@trust_app.command("update")
@reports_errors
def trust_update(
    file: Annotated[Path, typer.Argument(help="A newer C2PA trust list: PEM certificates or the list's JSON.")],
    tsa: Annotated[
        bool, typer.Option("--tsa", help="The file is the time-stamping-authority list (C2PA-TSA-TRUST-LIST.pem).")
    ] = False,
) -> None:
    """Replace the bundled C2PA trust list (or TSA list) with a newer one, kept with the credentials."""
    from provenance.trust import TrustListError, update_trust_list

    command_services = services()
    directory = command_services.settings.trust_lists_dir
    try:
        anchors = update_trust_list(file, directory, "time-stamping" if tsa else "signing")
    except TrustListError as exc:
        fail(str(exc))
    what = "time-stamping-authority list" if tsa else "trust list"
    console.print(f"C2PA {what} replaced: {len(anchors.anchors)} anchors in {directory}", highlight=False)
