"""Uploaded files: read within the byte limit, and image errors as HTTP errors with the right status."""

from fastapi import HTTPException, UploadFile

STATUS_FOR_KIND = {"too_large": 413, "unsupported": 415, "empty": 422, "corrupt": 422, "invalid": 422}


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
