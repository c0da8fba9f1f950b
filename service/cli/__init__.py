"""The `headshot` command line: one module per command group, all on one Typer app (service/cli/common.py)."""

from service.cli import audit, credentials, generate, keys, models, score, server, trust, verify  # noqa: F401  (they register)
from service.cli.common import app

__all__ = ["app"]
