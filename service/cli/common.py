"""What every command shares: the Typer app, the consoles, the services, and one way to report errors."""

import functools
from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(
    help="Disclosed AI headshots: generate with consent, score, and verify any photo.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True, emoji=False)  # ":AB:" in a fingerprint is not an emoji
errors = Console(stderr=True, soft_wrap=True, emoji=False)


def group(name: str, help: str) -> typer.Typer:
    """A command group: `headshot NAME ...`."""
    sub = typer.Typer(help=help, no_args_is_help=True)
    app.add_typer(sub, name=name)
    return sub


def services():
    """The collaborators this command works with, built from the HEADSHOT_ settings (service/services.py)."""
    from service.services import Services

    return Services()


def fail(message: str) -> None:
    errors.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _user_errors() -> tuple[type[Exception], ...]:
    """The errors whose message tells the user what to do: printed as such, never as a traceback."""
    from generation.faceid import IdentityError
    from generation.kohya import KohyaExportError
    from generation.models import ModelError
    from generation.pack import PackError
    from generation.presets import PresetError
    from generation.training import TrainingError
    from provenance import CredentialsError, ImageInputError
    from scoring.faces import FaceBackendError
    from scoring.score import ScoringError
    from service.database import DatabaseError

    return (
        CredentialsError,
        DatabaseError,
        FaceBackendError,
        IdentityError,
        ImageInputError,
        KohyaExportError,
        ModelError,
        PackError,
        PresetError,
        ScoringError,
        TrainingError,
    )


def reports_errors(command):
    """Turn the libraries' user errors (and unreadable files) into `error: <message>` and exit status 1."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except typer.Exit:
            raise
        except OSError as exc:
            if exc.filename is None:
                raise
            fail(f"cannot use {exc.filename}: {exc.strerror}")
        except Exception as exc:
            if not isinstance(exc, _user_errors()):
                raise
            fail(str(exc))

    return run


def read_image(path: Path, limits, what: str = ""):
    """A file's bytes within the image limits; an unreadable one is an error naming it (`what` is its role)."""
    from provenance import ImageInputError
    from provenance.images import read_file

    try:
        return read_file(path, limits)
    except ImageInputError as exc:
        raise ImageInputError(f"{what}{path}: {exc}", exc.kind) from None


def read_bytes(path: Path) -> bytes:
    """A file the user named (not an image); an unreadable one is an error naming it."""
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def write_file(path: Path, data: bytes) -> None:
    """Write an output file atomically; a failure names the file."""
    from provenance.files import write_atomically

    try:
        write_atomically(path, data)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}")
