"""`headshot audit ...`: verify the hash-chained audit log, anchor it, show the audit key, verify signed records."""

import json
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import console, errors, fail, group, reports_errors, services

audit_app = group("audit", "The tamper-evident audit log and the signed records auditors check offline.")


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except (ValueError, UnicodeDecodeError):
        fail(f"{path} is not JSON ({what})")


@audit_app.command("verify")
@reports_errors
def audit_verify(
    anchor: Annotated[
        list[Path] | None, typer.Option("--anchor", help="An anchor kept elsewhere (`audit anchor --out`); repeat.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Recompute the audit chain and check its anchors; exit 1 naming the first event that does not match."""
    from sqlmodel import Session

    from service.audit_chain import AnchorRecord, verify_chain

    command_services = services()
    extra = []
    for path in anchor or []:
        record = _read_json(path, "an anchor written by `headshot audit anchor --out`")
        try:
            extra.append(AnchorRecord(record["seq"], record["hash"], record["token"], record.get("tsa_url"), str(path)))
        except (KeyError, TypeError):
            fail(f"{path} is not an anchor written by `headshot audit anchor --out`")
    trust = command_services.trust().pem
    with Session(command_services.engine) as session:
        report = verify_chain(session, trust, extra)
    if as_json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        state = "[green]intact[/green]" if report.intact else "[red]NOT intact[/red]"
        console.print(
            f"audit chain {state}: {report.events:,} events verified, head #{report.head_seq} {report.head_hash}",
            highlight=False,
        )
        if report.problem:
            console.print(f"  first problem: {report.problem.reason}", highlight=False, markup=False)
        for check in report.anchors:
            trusted = "trusted TSA" if check.tsa_trusted else "TSA not among the trust anchors"
            outcome = check.problem or f"matches ({trusted}: {check.tsa})"
            console.print(
                f"  anchor #{check.seq} from {check.source}, time-stamped {check.time_stamped_at}: {outcome}",
                highlight=False,
                markup=False,
            )
    if not report.intact:
        raise typer.Exit(1)


@audit_app.command("anchor")
@reports_errors
def audit_anchor(
    out: Annotated[
        Path | None, typer.Option("--out", help="Also write the anchor to this file, to keep apart.")
    ] = None,
) -> None:
    """Have the chain's head time-stamped by HEADSHOT_TIMESTAMP_URL (RFC 3161) and record the token."""
    from service.audit_anchor import AnchorError, anchor_head
    from service.audit_chain import AnchorRecord

    command_services = services()
    timestamp_url = command_services.settings.timestamp_url
    if not timestamp_url:
        fail("no timestamp authority: set HEADSHOT_TIMESTAMP_URL to an RFC 3161 TSA")
    try:
        anchor = anchor_head(command_services.engine, timestamp_url)
    except AnchorError as exc:
        fail(str(exc))
    if out is not None:
        record = AnchorRecord(anchor.seq, anchor.hash, anchor.token, anchor.tsa_url).as_dict()
        out.write_text(json.dumps({**record, "time_stamped_at": anchor.time_stamped_at.isoformat()}, indent=2))
    console.print(
        f"anchored event #{anchor.seq} ({anchor.hash}), time-stamped {anchor.time_stamped_at.isoformat()} "
        f"by {anchor.tsa_url}" + (f"; written to {out}" if out else ""),
        highlight=False,
    )


@audit_app.command("key")
def audit_key(
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Sign with a new key from now on (the old one is kept).")
    ] = False,
) -> None:
    """Print the audit keys' JWKS (public keys only; save it for `verify-export --jwks`)."""
    keys = services().audit_keys
    if rotate:
        errors.print(f"new audit key {keys.rotate()}; earlier keys stay in the JWKS", highlight=False)
    print(json.dumps(keys.jwks(), indent=2))


@audit_app.command("verify-export")
def audit_verify_export(
    file: Annotated[
        Path, typer.Argument(help="A signed record: a subject export, a headshot's chain, a training record.")
    ],
    jwks: Annotated[
        Path | None, typer.Option("--jwks", help="The JWKS to check with (default: this installation's keys).")
    ] = None,
) -> None:
    """Check a signed record offline; exit 1 if its signature fails or its content was changed."""
    from service.signed_records import RecordError, verify_record

    document = _read_json(file, "a signed record")
    if jwks is not None:
        keys = _read_json(jwks, "a JWKS from /.well-known/jwks.json or `headshot audit key`")
    else:
        keys = services().audit_keys.jwks(create=False)
        if not keys["keys"]:
            fail("this installation has no audit key: pass --jwks FILE (from /.well-known/jwks.json)")
    try:
        verified = verify_record(document, keys if isinstance(keys, dict) else {})
    except RecordError as exc:
        console.print(f"{file}: [red]NOT valid[/red]: {exc}", highlight=False)
        raise typer.Exit(1) from None
    console.print(
        f"{file}: [green]valid[/green] {verified.record_type}, signed {verified.signed_at.isoformat()} "
        f"by key {verified.kid}",
        highlight=False,
    )
