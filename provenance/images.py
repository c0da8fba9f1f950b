"""Reading untrusted image files: format from content, size and pixel limits, full decode, upright pixels."""

import contextlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow reports JPEGs with a multi-picture (MPF) segment as "MPO".
MIME_TYPES = {"JPEG": "image/jpeg", "MPO": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}

_OTHER_SIGNATURES = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"BM": "BMP",
    b"%PDF": "PDF",
    b"PK\x03\x04": "ZIP",
}


class ImageInputError(ValueError):
    """An input the user gave cannot be used; the message says what is wrong and what to do.

    `kind` says which: "empty", "unsupported", "too_large", "corrupt", "unreadable" or "invalid".
    """

    def __init__(self, message: str, kind: str = "invalid"):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 25_000_000
    max_pixels: int = 50_000_000


def detect_format(data: bytes) -> str:
    """Return "JPEG", "PNG" or "WEBP" from the file's first bytes, never from its name."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if not data:
        raise ImageInputError("the file is empty (0 bytes); upload a JPEG, PNG or WebP image", "empty")
    if data[4:8] == b"ftyp":
        kind = "HEIF/AVIF"
    else:
        kind = next((name for sig, name in _OTHER_SIGNATURES.items() if data.startswith(sig)), None)
    if kind:
        raise ImageInputError(f"this is a {kind} file; only JPEG, PNG and WebP images are supported", "unsupported")
    raise ImageInputError("not a JPEG, PNG or WebP image (its content matches none of them)", "unsupported")


def read_file(path: Path, limits: ImageLimits) -> bytes:
    """Read a file, refusing it before reading when it is over the byte limit."""
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            raise ImageInputError(
                f"the file is {size:,} bytes, over the limit of {limits.max_bytes:,} bytes; "
                "send a smaller image or raise HEADSHOT_MAX_UPLOAD_BYTES",
                "too_large",
            )
        return path.read_bytes()
    except IsADirectoryError:
        raise ImageInputError("this is a directory, not an image file", "unreadable") from None
    except FileNotFoundError:
        raise ImageInputError("no such file; check the path", "unreadable") from None
    except PermissionError:
        raise ImageInputError("permission denied; check the file's permissions", "unreadable") from None
    except OSError as exc:
        raise ImageInputError(f"cannot read the file ({exc.strerror or exc})", "unreadable") from None


def check_size(data: bytes, limits: ImageLimits) -> None:
    if len(data) > limits.max_bytes:
        raise ImageInputError(
            f"the file is {len(data):,} bytes, over the limit of {limits.max_bytes:,} bytes; "
            "send a smaller image or raise HEADSHOT_MAX_UPLOAD_BYTES",
            "too_large",
        )


def decode_image(data: bytes, limits: ImageLimits) -> Image.Image:
    """Decode the whole image after checking its declared size, so truncated or bomb files fail here.

    The pixels come back upright: an EXIF (or XMP) Orientation tag, as phones write for a photo taken
    sideways, is applied here, once, for every reader (references, scoring, fingerprints, verification),
    and removed from the image's EXIF so nothing applies it twice. The original bytes, and so their
    SHA-256 (a photo's identity), are untouched. The returned image keeps Pillow's `format`, its JPEG
    tables and `info` (XMP, EXIF, PNG text chunks).
    """
    check_size(data, limits)
    image_format = detect_format(data)
    corrupt = (UnidentifiedImageError, SyntaxError, EOFError, OSError, ValueError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=[image_format])
        except Image.DecompressionBombError as exc:
            raise _over_pixel_limit(limits, _declared_pixels(exc)) from None
        except corrupt as exc:
            raise _corrupt(image_format, exc) from None
        width, height = image.size
        if width * height > limits.max_pixels:
            raise _over_pixel_limit(limits, f"{width}x{height} = {width * height:,} pixels")
        try:
            image.load()
        except Image.DecompressionBombError:
            raise _over_pixel_limit(limits) from None
        except corrupt as exc:
            raise _corrupt(image_format, exc) from None
    _turn_upright(image)
    return image


def _turn_upright(image: Image.Image) -> None:
    """Apply the Orientation tag to the pixels in place (keeping the image's format and tables) and drop the tag.

    A malformed EXIF block (Pillow raises many types for one) leaves the pixels as stored: it is unsigned
    metadata. Pillow removes the tag from the image's parsed EXIF before it re-serialises it, so even a
    failure there cannot make a later reader turn the pixels a second time.
    """
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)


def _over_pixel_limit(limits: ImageLimits, declared: str = "more pixels than allowed") -> ImageInputError:
    return ImageInputError(
        f"the image declares {declared}, over the limit of {limits.max_pixels:,} pixels; "
        "send a smaller image or raise HEADSHOT_MAX_PIXELS",
        "too_large",
    )


def _declared_pixels(exc: Image.DecompressionBombError) -> str:
    """The pixel count Pillow found in the header of an image it refused to open, when it says it."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(match[1]):,} pixels" if match else "more pixels than allowed"


def _corrupt(image_format: str, exc: Exception) -> ImageInputError:
    # Pillow's "cannot identify image file <_io.BytesIO object at 0x...>" says nothing useful to a user
    reason = "its headers cannot be parsed" if isinstance(exc, UnidentifiedImageError) else str(exc)
    return ImageInputError(
        f"the {image_format} data is corrupt or truncated ({reason}); re-export the image and try again",
        "corrupt",
    )
