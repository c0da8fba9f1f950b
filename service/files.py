"""The service's own files and folders are its user's alone: folders 0700, files 0600 (like the signing keys).

Folders are created with that mode, each missing parent too (`mkdir -p` would give the parents the umask's
default, usually 0755); folders that exist already are left as the operator made them.
"""

import contextlib
import os
from pathlib import Path

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


def private_directory(path: Path) -> Path:
    """Create `path` and its missing parents, readable by this user only."""
    path = Path(path)
    missing = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):
            folder.mkdir(mode=PRIVATE_FOLDER)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty if it does not exist; either way make it readable and writable by this user only."""
    path = Path(path)
    private_directory(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    os.chmod(path, PRIVATE_FILE)
    return path
