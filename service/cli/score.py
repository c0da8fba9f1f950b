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
    candidates: Annotated[list[Path], typer.Argument(metavar="CANDIDATE", help="Candidate headshots to score.")],
    reference: Annotated[list[Path], typer.Option(metavar="PHOTO", help="A photo of the person (repeat per photo).")],
    top_k: Annotated[int, typer.Option("--top-k", metavar="K", help="How many to keep.", min=1)] = 10,
    workers: Annotated[int, typer.Option(metavar="N", help="Processes to score with (0: one per core).", min=0)] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON array, one object per candidate.")] = False,
) -> None:
    """Score candidates for likeness to the reference photos and for artifacts; keep the best K."""
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
            top_k,
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
    """A table where there is room for one (100 columns or more), else one block per candidate; file names are
    shown without the directory they all share, so they stay apart at any width."""
    accepted = len(identity.accepted)
    console.print(f"identity from {accepted} reference photo(s), spread {identity.spread:.3f} ({identity.backend})")
    folder, names = _without_common_folder([report.file for report in reports])
    if folder:
        console.print(f"candidates in {folder}/", highlight=False, markup=False)
    rows = [
        (
            str(report.rank),
            name,
            f"{report.score:.1f}",
            _likeness_text(report.likeness),
            _failed(report),
            report.kept_reason.replace(f"{folder}/", "") if folder else report.kept_reason,
        )
        for report, name in zip(reports, names, strict=True)
    ]
    if console.width >= 100:
        from rich.table import Table

        table = Table("rank", "file", "score", "likeness", "failed checks", "kept")
        table.columns[1].overflow = "fold"  # a name too long for the width wraps; it is never cut short
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        for rank, name, score, likeness, failed, kept in rows:
            console.print(f"{rank}. {name}", highlight=False, markup=False)
            console.print(
                f"   score {score}, likeness {likeness}, failed checks: {failed}; kept: {kept}",
                highlight=False,
                markup=False,
            )
    for failure in failures:
        console.print(f"[red]error[/red] {failure['file']}: {failure['error']}", highlight=False)
    console.print(reports[0].notes[0] if reports else "", highlight=False)


def _likeness_text(likeness) -> str:
    if likeness is None:
        return "no face"
    near = f", near-copy of {likeness.near_copy_of}" if likeness.near_copy_of else ""
    return f"{likeness.band} ({likeness.confidence:.2f}, d={likeness.distance:.3f}){near}"


def _failed(report) -> str:
    return ", ".join(check.name for check in report.checks if not check.passed) or "-"


def _without_common_folder(files: list[str]) -> tuple[str, list[str]]:
    """The folder every file is in (or "") and the names relative to it."""
    import os.path

    folders = [os.path.dirname(file) for file in files]
    if not folders or not all(folders) or len({os.path.isabs(folder) for folder in folders}) > 1:
        return "", files
    common = os.path.commonpath(folders)
    if not common:
        return "", files
    return common, [os.path.relpath(file, common) for file in files]
