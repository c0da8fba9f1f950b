"""Files written whole or not at all: every package's one way to write a file (provenance is the lowest layer).

The data goes to a temporary file beside the target (created 0600 by mkstemp, so a private file is never
readable by others, not even for a moment), which then gets its final mode and is renamed over the target:
a reader sees the old file or the new one, never half of one.
"""

import os
import shutil
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes | Path, mode: int = 0o644) -> None:
    """Write `data` (bytes, or the contents of the file at that path) to `path`, atomically, with `mode`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        if isinstance(data, Path):
            os.close(fd)
            shutil.copyfile(data, partial)
        else:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
        os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
