"""Where uploads, LoRA weights, checkpoints and outputs live: one small interface, a shared directory behind it.

Keys are relative POSIX paths (`subjects/<id>/photos/<sha256>.jpg`, `jobs/<id>/lora-<attempt>/...`). Every
API replica and worker resolves them against the same `HEADSHOT_STORAGE_DIR` (a network file system when
they run on several machines), so a row in the database names a file that every process can read. An object
store can follow by implementing the same six methods; nothing else touches the files.
"""

import shutil
from pathlib import Path
from typing import Protocol

from provenance.files import write_atomically
from service.files import private_directory


class StorageError(RuntimeError):
    """A key is malformed or names nothing stored; the message says which."""


class Storage(Protocol):
    def write(self, key: str, data: bytes) -> None:
        """Store `data` under `key`, replacing what was there; readers see the old or the new bytes, never a part."""

    def read(self, key: str) -> bytes: ...

    def upload(self, key: str, source: Path) -> None:
        """Store a local file (as `write`, without holding it in memory)."""

    def download(self, key: str, target: Path) -> None:
        """Copy what `key` holds into a local file."""

    def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix` (a folder-like prefix ending in `/`), sorted."""

    def delete(self, prefix: str) -> None:
        """Remove `prefix` and everything under it; nothing there is not an error."""


class DirectoryStorage:
    """Storage in a directory: a local disk for one machine, a shared mount for several. Folders it creates
    are 0700 and files 0600: they hold people's photos and models of their faces."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        private_directory(path.parent)
        write_atomically(path, data, mode=0o600)

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"nothing is stored under {key}") from None

    def upload(self, key: str, source: Path) -> None:
        path = self._path(key)
        private_directory(path.parent)
        write_atomically(path, Path(source), mode=0o600)

    def download(self, key: str, target: Path) -> None:
        private_directory(target.parent)
        try:
            shutil.copyfile(self._path(key), target)
        except FileNotFoundError:
            raise StorageError(f"nothing is stored under {key}") from None

    def keys(self, prefix: str) -> list[str]:
        folder = self._path(prefix)
        if not folder.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        )

    def delete(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.removesuffix("/").split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise StorageError(f"{key!r} is not a storage key (a relative path without '.' or '..' parts)")
        return self.root.joinpath(*parts)
