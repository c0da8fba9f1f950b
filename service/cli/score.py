"""`headshot score`: likeness to the reference photos and the artifacts that give AI headshots away."""

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from service.cli.common import app, console, errors, fail, reports_errors, services


@app.command()
@reports_errors
def score(
    candidates: Annotated[list[Path], typer.Argument(help="Candidate headshots to score.")],
    reference: Annotated[list[Path], typer.Option(help="A photo of the person (repeat per photo).")],
    top: Annotated[int, typer.Option(help="How many to keep.", min=1)] = 10,
    workers: Annotated[int, typer.Option(help="Processes to score with (0: one per core).", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array, one object per candidate.")] = False,
) -> None:
    """Score candidates for likeness to the reference photos and for artifacts; keep the best TOP."""
    from rich.progress import Progress

    from provenance import ImageInputError
    from provenance.images import decode_image, read_file
    from scoring.score import ScoringError, build_identity, score_pack

    command_services = services()
    limits = command_services.settings.image_limits

    def load(path: Path):
        return decode_image(read_file(path, limits), limits)

    backend = command_services.face_backend
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
        fail(f"{exc}{''.join(f'; {name}: {reason}' for name, reason in unreadable)}")
    rejected = unreadable + [(r.name, r.reason) for r in identity.references if not r.accepted]

    with Progress(console=errors, transient=True, disable=len(loaded) <= 3) as bar:
        task = bar.add_task("scoring", total=len(loaded))
        reports = score_pack(
            loaded,
            identity,
            backend,
            top,
            progress=lambda done, total: bar.update(task, completed=done),
            workers=workers or len(os.sched_getaffinity(0)),
        )
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
