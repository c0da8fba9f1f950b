"""A hostile-input corpus, generated on demand (no binary blobs are committed).

Each entry names a file and the outcome every entry point must give it:

- "error": a clear ImageInputError-type message (`message` is a substring of it; `kind` its kind);
- "verdict": a verdict, with one of `labels` when they are known in advance.

Run it to write the corpus somewhere and print what it holds:

    .venv/bin/python -m tests.hostile.corpus OUT_DIR
"""

import io
import random
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CREDENTIALED_JPEG = SHARED_DATA / "c2pa-conformance" / "adobe-20220124-CA.jpg"

PIXEL_LIMIT = "over the limit of 50,000,000 pixels"
TRUNCATED = "corrupt or truncated"
BROKEN_C2PA = ("invalid_credentials", "no_provenance")


@dataclass(frozen=True)
class Entry:
    name: str  # file name in the corpus directory (its extension may lie)
    expect: str  # "error" or "verdict"
    description: str
    message: str | None = None  # for "error": a substring of the error message
    kind: str | None = None  # for "error": ImageInputError.kind
    labels: tuple[str, ...] = ()  # for "verdict": the acceptable labels (empty: any)
    disclosable: bool | None = None  # whether disclose_image must accept it (None: either outcome is fine)

    @property
    def error(self) -> bool:
        return self.expect == "error"


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _picture(size: int = 320, mode: str = "RGB") -> Image.Image:
    """A deterministic, textured test picture (gradients and shapes, not noise, so it compresses sanely)."""
    image = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    draw = ImageDraw.Draw(image)
    rng = random.Random(7)
    for _ in range(24):
        x, y = rng.randrange(size), rng.randrange(size)
        r = rng.randrange(8, size // 4)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=tuple(rng.randrange(256) for _ in range(3)))
    return image.convert(mode)


# --- PNG and JPEG building blocks -------------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png(width: int, height: int, bit_depth: int, colour_type: int, idat: bytes, extra: bytes = b"") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + extra
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _bomb_png(side: int) -> bytes:
    """A valid 1-bit PNG of one colour, side x side pixels, compressed row by row (never built in memory)."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte "None" + packed bits
    chunks = [compressor.compress(row * 1000) for _ in range(side // 1000)]
    chunks.append(compressor.compress(row * (side % 1000)))
    chunks.append(compressor.flush())
    return _png(side, side, 1, 0, b"".join(chunks))


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each marker segment before the scan data; end is exclusive."""
    assert data[:2] == b"\xff\xd8"
    segments, offset = [], 2
    while offset + 4 <= len(data):
        marker = data[offset + 1]
        length = struct.unpack(">H", data[offset + 2 : offset + 4])[0]
        segments.append((marker, offset, offset + 2 + length))
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        offset += 2 + length
    return segments


def _with_sof_size(data: bytes, width: int, height: int) -> bytes:
    """The JPEG with its frame header (SOF) declaring another size; the scan data is left as it was."""
    for marker, start, _end in _jpeg_segments(data):
        if marker in (0xC0, 0xC1, 0xC2):
            return data[: start + 5] + struct.pack(">HH", height, width) + data[start + 9 :]
    raise ValueError("no SOF segment")


def _insert_after_soi(data: bytes, *segments: bytes) -> bytes:
    return data[:2] + b"".join(segments) + data[2:]


def _segment(marker: int, body: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body


def _app11_jumbf(box_length: int, sequence: int = 1, payload: bytes = b"", xl_length: int | None = None) -> bytes:
    """One APP11 segment of a JPEG-XT JUMBF box sequence: CI "JP", instance 1, sequence, then the box.

    The superbox header declares `box_length` (or, with box_length 1, the 64-bit `xl_length`).
    """
    header = struct.pack(">I", box_length) + b"jumb"
    if box_length == 1:
        header += struct.pack(">Q", xl_length)
    description = _jumbf_description(b"c2pa")
    body = b"JP" + struct.pack(">HI", 1, sequence) + header + description + payload
    return _segment(0xEB, body)


def _jumbf_description(label: bytes) -> bytes:
    # jumd box: UUID of the C2PA manifest store, toggles "requestable + label", the label, NUL
    uuid = bytes.fromhex("6332706100110010800000aa00389b71")
    body = uuid + b"\x03" + label + b"\x00"
    return struct.pack(">I", 8 + len(body)) + b"jumd" + body


def _app11_segments(data: bytes) -> list[tuple[int, int]]:
    return [(start, end) for marker, start, end in _jpeg_segments(data) if marker == 0xEB]


def _flip_app11(data: bytes) -> bytes:
    """Flip bytes inside the manifest's APP11 payload (claims and signature), leaving every length intact."""
    out = bytearray(data)
    for start, end in _app11_segments(data):
        for offset in range(start + 40, end, 97):  # past the segment, JP and box headers
            out[offset] ^= 0x5A
    return bytes(out)


def _truncate_app11(data: bytes) -> bytes:
    """Cut the last APP11 segment's payload in half and fix its segment length, so the JUMBF box runs short."""
    start, end = _app11_segments(data)[-1]
    keep = (end - start) // 2
    segment = data[start : start + keep]
    segment = segment[:2] + struct.pack(">H", keep - 2) + segment[4:]
    return data[:start] + segment + data[end:]


def _drop_middle_app11(data: bytes) -> bytes:
    """Remove one APP11 segment from the middle of the sequence, so the JUMBF superbox has a hole."""
    segments = _app11_segments(data)
    start, end = segments[len(segments) // 2]
    return data[:start] + data[end:]


def _app11_length_past_eof(data: bytes) -> bytes:
    """The first APP11 segment declares 65535 bytes and the file ends in the middle of it."""
    start, _end = _app11_segments(data)[0]
    return data[:start] + b"\xff\xeb\xff\xff" + data[start + 4 : start + 2000]


def _exif_orientation(value: int) -> bytes:
    """A little-endian TIFF/EXIF block with only an Orientation (0x0112) tag."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, value, 0) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def _zip_archive() -> bytes:
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("payload/readme.txt", "a polyglot: this JPEG is also a ZIP archive\n" * 50)
        archive.writestr("payload/run.sh", "#!/bin/sh\necho hello\n")
    return buffer.getvalue()


def _frames(count: int = 4, size: int = 96) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (60 * i, 255 - 60 * i, 128)) for i in range(count)]


def _xmp_billion_laughs() -> bytes:
    entities = '<!ENTITY a0 "ha">' + "".join(f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10))
    packet = (
        f'<?xml version="1.0"?><!DOCTYPE x:xmpmeta [{entities}]>'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="&a9;"/>'
        "</rdf:RDF></x:xmpmeta>"
    )
    return b"http://ns.adobe.com/xap/1.0/\x00" + packet.encode()


# --- the corpus ----------------------------------------------------------------------------------------


def build(directory: Path) -> list[Entry]:
    """Write every corpus file into `directory` (created if needed) and return the entries."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    picture = _picture()
    jpeg = _encode(picture, "JPEG", quality=90)
    png = _encode(picture, "PNG")
    webp = _encode(picture, "WEBP", quality=80)
    credentialed = CREDENTIALED_JPEG.read_bytes()
    files: list[tuple[Entry, bytes]] = []

    def add(data: bytes, entry: Entry) -> None:
        files.append((entry, data))

    def fails(name: str, data: bytes, description: str, message: str, kind: str) -> None:
        add(data, Entry(name, "error", description, message=message, kind=kind, disclosable=False))

    def verdict(name: str, data: bytes, description: str, label: str | tuple, disclosable: bool | None) -> None:
        labels = (label,) if isinstance(label, str) else tuple(label)
        add(data, Entry(name, "verdict", description, labels=labels, disclosable=disclosable))

    # truncated and garbage files
    fails("truncated.jpg", jpeg[: len(jpeg) // 2], "JPEG cut in half", TRUNCATED, "corrupt")
    fails("truncated-header.jpg", jpeg[:200], "JPEG cut inside its headers", TRUNCATED, "corrupt")
    fails("truncated.png", png[: len(png) // 2], "PNG cut in half", TRUNCATED, "corrupt")
    fails("truncated.webp", webp[: len(webp) // 2], "WebP cut in half", TRUNCATED, "corrupt")
    fails("zero-bytes.jpg", b"", "an empty file", "the file is empty", "empty")
    fails(
        "random-bytes.jpg",
        random.Random(1).randbytes(4096),
        "random bytes named .jpg",
        "not a JPEG, PNG or WebP image",
        "unsupported",
    )
    fails(
        "random-after-jpeg-magic.jpg",
        b"\xff\xd8\xff" + random.Random(2).randbytes(4096),
        "JPEG magic followed by random bytes",
        TRUNCATED,
        "corrupt",
    )

    # pixel counts: the bomb and lying headers
    fails(
        "bomb-30000x30000.png",
        _bomb_png(30_000),
        "valid 1-bit PNG, 30000x30000 of one colour (900 MP), ~110 KB compressed",
        PIXEL_LIMIT,
        "too_large",
    )
    fails(
        "declared-20000x20000.png",
        _png(20_000, 20_000, 8, 2, zlib.compress(b"\x00" * 64)),
        "PNG header declaring 20000x20000, with almost no pixel data",
        PIXEL_LIMIT,
        "too_large",
    )
    fails(
        "declared-20000x20000.jpg",
        _with_sof_size(jpeg, 20_000, 20_000),
        "JPEG whose frame header declares 20000x20000 over 320x320 scan data",
        PIXEL_LIMIT,
        "too_large",
    )
    verdict(
        "declared-7000x7000.jpg",
        _with_sof_size(jpeg, 7_000, 7_000),
        "JPEG declaring 7000x7000 (49 MP, just under the limit) over 320x320 scan data; libjpeg pads it",
        "no_provenance",
        None,
    )
    one_pixel = Image.new("RGB", (1, 1), (200, 10, 10))
    verdict("declared-1x1.png", _encode(one_pixel, "PNG"), "1x1 PNG", "no_provenance", True)
    verdict("declared-1x1.jpg", _encode(one_pixel, "JPEG"), "1x1 JPEG", "no_provenance", True)

    # unusual but valid modes
    verdict("cmyk.jpg", _encode(picture.convert("CMYK"), "JPEG", quality=90), "CMYK JPEG", "no_provenance", True)
    sixteen = Image.fromarray(np.asarray(picture.convert("L"), dtype=np.uint16) * 257)
    verdict("16-bit-grey.png", _encode(sixteen, "PNG"), "16-bit greyscale PNG", "no_provenance", True)
    verdict(
        "16-bit-rgb.png",
        _png(64, 64, 16, 2, zlib.compress((b"\x00" + b"\x12\x34\x56\x78\x9a\xbc" * 64) * 64)),
        "16-bit-per-channel RGB PNG",
        "no_provenance",
        True,
    )
    verdict(
        "palette.png",
        _encode(picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"),
        "palette PNG",
        "no_provenance",
        True,
    )
    palette_alpha = picture.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    verdict(
        "palette-transparency.png",
        _encode(palette_alpha, "PNG", transparency=0),
        "palette PNG with a tRNS transparent index",
        "no_provenance",
        True,
    )

    # animation
    frames = _frames()
    fails(
        "animated.gif",
        _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "animated GIF",
        "this is a GIF file",
        "unsupported",
    )
    verdict(
        "animated.webp",
        _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, loop=0),
        "animated WebP (verified from its first frame; disclosure refuses it)",
        "no_provenance",
        False,
    )

    # EXIF orientation out of range
    for value in (9, 65535):
        verdict(
            f"exif-orientation-{value}.jpg",
            _insert_after_soi(jpeg, _segment(0xE1, _exif_orientation(value))),
            f"JPEG with EXIF Orientation = {value}",
            "no_provenance",
            True,
        )

    # broken C2PA (JUMBF in APP11)
    for name, mutate, description in (
        ("c2pa-flipped-bytes.jpg", _flip_app11, "credentialed JPEG with bytes flipped inside its APP11 segments"),
        ("c2pa-truncated-segment.jpg", _truncate_app11, "credentialed JPEG whose last APP11 segment is cut short"),
        ("c2pa-missing-segment.jpg", _drop_middle_app11, "credentialed JPEG missing one APP11 segment"),
    ):
        verdict(name, mutate(credentialed), description, "invalid_credentials", None)
    fails(
        "c2pa-segment-past-eof.jpg",
        _app11_length_past_eof(credentialed),
        "credentialed JPEG ending inside an APP11 segment that declares 65535 bytes",
        TRUNCATED,
        "corrupt",
    )
    huge = [
        ("jumbf-box-4gib.jpg", _app11_jumbf(0xFFFFFFF0, payload=b"\x00" * 64), "a JUMBF box declaring ~4 GiB"),
        ("jumbf-box-xl-2e62.jpg", _app11_jumbf(1, xl_length=1 << 62), "a JUMBF box with a 64-bit length of 2^62"),
        (
            "jumbf-box-many-segments.jpg",
            b"".join(_app11_jumbf(0x7FFFFFFF, sequence=n, payload=b"\x00" * 60000) for n in range(1, 9)),
            "8 APP11 segments (~480 KB) of one JUMBF box declaring 2 GiB",
        ),
    ]
    for name, segments, description in huge:
        # c2pa reports a box it cannot read as a malformed claim, or (64-bit length) as no manifest at all
        verdict(name, _insert_after_soi(jpeg, segments), f"plain JPEG with {description}", BROKEN_C2PA, None)

    # metadata bombs
    verdict(
        "xmp-billion-laughs.jpg",
        _insert_after_soi(jpeg, _segment(0xE1, _xmp_billion_laughs())),
        "JPEG whose XMP packet is a billion-laughs entity bomb",
        "no_provenance",
        None,
    )
    ztxt = _png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * 50_000_000, 9))
    fails(
        "ztxt-bomb.png",
        png[:33] + ztxt + png[33:],
        "PNG with a zTXt chunk inflating to 50 MB (Pillow caps text chunks at 1 MB)",
        "Decompressed data too large",
        "corrupt",
    )

    # disguises
    verdict("polyglot-jpeg-zip.jpg", jpeg + _zip_archive(), "valid JPEG with a ZIP appended", "no_provenance", True)
    verdict("png-named.jpg", png, "a PNG named .jpg", "no_provenance", True)
    verdict("webp-named.png", webp, "a WebP named .png", "no_provenance", True)

    names = [entry.name for entry, _ in files]
    assert len(names) == len(set(names)), "corpus names must be unique"
    for entry, data in files:
        (directory / entry.name).write_bytes(data)
    return [entry for entry, _ in files]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.hostile.corpus OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    for entry in build(out):
        outcome = f"error ({entry.message})" if entry.error else f"verdict {' or '.join(entry.labels) or '(any)'}"
        print(f"{entry.name:32} {(out / entry.name).stat().st_size:>9,} B  {outcome:55} {entry.description}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
