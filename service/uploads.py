"""Uploaded files: read within the byte limit, and image errors as HTTP errors with the right status."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import File, HTTPException, UploadFile

from service.deps import SettingsDep

STATUS_FOR_KIND = {"too_large": 413, "unsupported": 415, "empty": 422, "corrupt": 422, "invalid": 422}


@dataclass(frozen=True)
class UploadedImage:
    """The bytes of the multipart field `file` (within HEADSHOT_MAX_UPLOAD_BYTES) and the name to show for it."""

    data: bytes
    name: str

    @contextmanager
    def image_errors(self) -> Iterator[None]:
        """Inside, a provenance ImageInputError becomes the HTTP error its kind calls for, naming the file."""
        from provenance import ImageInputError

        try:
            yield
        except ImageInputError as exc:
            raise image_error(exc, self.name) from None


def uploaded_image(description: str) -> Callable[..., UploadedImage]:
    """The dependency of a route taking one image as `file`; `description` documents the field."""

    def read(file: Annotated[UploadFile, File(description=description)], settings: SettingsDep) -> UploadedImage:
        return UploadedImage(read_upload(file, settings.max_upload_bytes), file.filename or "upload")

    return read


def read_upload(file: UploadFile, max_bytes: int) -> bytes:
    """Read an uploaded file, stopping as soon as it passes the byte limit."""
    data = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(
            413, f"{file.filename or 'upload'}: the file is over the limit of {max_bytes:,} bytes; send a smaller image"
        )
    return data


def image_error(exc, filename: str | None) -> HTTPException:
    return HTTPException(STATUS_FOR_KIND.get(exc.kind, 422), f"{filename or 'upload'}: {exc}")
