"""Coverage-guided fuzz target (atheris/libFuzzer) for the image intake and verify path.

bytes -> provenance.images.decode_image(...) and provenance.verify_image(...). The only acceptable exception
is provenance.ImageInputError; anything else (another exception, a crash in native code, a hang) is a finding.

    python tests/fuzz/fuzz_intake.py -runs=10000                  # a fixed number of inputs
    python tests/fuzz/fuzz_intake.py -max_total_time=60           # a bounded CI run
    python tests/fuzz/fuzz_intake.py -max_total_time=600 CORPUS/  # keep what it finds in CORPUS/

Any libFuzzer flag works. Without a corpus directory the seeds (tiny JPEG, PNG and WebP made with Pillow, and
C2PA manifests from the conformance files, spliced into a tiny JPEG or cut short) go to a temporary directory;
with one, the seeds are added to it when it is empty. `-seed=1` is the default, for reproducible runs.
A crashing input is written as crash-<sha1> in the working directory (or -artifact_prefix); replay it with
`python tests/fuzz/fuzz_intake.py crash-<sha1>`.
"""

import contextlib
import io
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

# Instrument what the path runs; modules it would import lazily (Pillow's plugins, c2pa, the XMP parser)
# are imported here so that they are instrumented too.
with atheris.instrument_imports(include=["provenance", "PIL", "defusedxml", "c2pa", "xml"]):
    import c2pa  # noqa: F401
    import defusedxml.ElementTree  # noqa: F401
    from PIL import Image, JpegImagePlugin, MpoImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin  # noqa: F401

    import provenance.metadata  # noqa: F401
    from provenance import ImageInputError, ImageLimits, TrustAnchors, verify_image
    from provenance.images import decode_image

warnings.simplefilter("ignore")  # Pillow warns about corrupt EXIF on most mutated inputs

CONFORMANCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "c2pa-conformance"
LIMITS = ImageLimits(max_bytes=1_000_000, max_pixels=2_000_000)
TRUST = TrustAnchors()


def test_one_input(data: bytes) -> None:
    with contextlib.suppress(ImageInputError):
        decode_image(data, LIMITS)
    with contextlib.suppress(ImageInputError):
        verify_image(data, TRUST, LIMITS)


def _encode(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _segments(jpeg: bytes):
    """(marker, start, end) of each JPEG marker segment before the scan data."""
    position = 2
    while position + 4 <= len(jpeg) and jpeg[position] == 0xFF and jpeg[position + 1] != 0xDA:
        end = position + 2 + int.from_bytes(jpeg[position + 2 : position + 4], "big")
        yield jpeg[position + 1], position, end
        position = end


def seeds() -> dict[str, bytes]:
    image = Image.new("RGB", (16, 12), (200, 120, 40))
    image.putpixel((3, 4), (0, 0, 255))
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        b'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    text = PngImagePlugin.PngInfo()
    text.add_text("parameters", "a headshot\nSteps: 20, Sampler: Euler a, Seed: 1, Model: sdxl")
    exif = Image.Exif()
    exif[0x0131] = "fuzz seed"  # Software
    tiny_jpeg = _encode(image, "JPEG", quality=80)
    found = {
        "tiny.jpg": tiny_jpeg,
        "tiny-xmp-exif.jpg": _encode(image, "JPEG", quality=50, xmp=xmp, exif=exif),
        "tiny.png": _encode(image, "PNG"),
        "tiny-text.png": _encode(image.convert("RGBA"), "PNG", pnginfo=text),
        "tiny-gray.png": _encode(image.convert("L"), "PNG"),
        "tiny.webp": _encode(image, "WEBP", quality=60),
        "tiny-lossless.webp": _encode(image, "WEBP", lossless=True),
    }
    source = CONFORMANCE / "adobe-20220124-C.jpg"  # the smallest conformance file with a manifest (APP11)
    if source.exists():
        signed = source.read_bytes()
        manifest = b"".join(signed[start:end] for marker, start, end in _segments(signed) if marker == 0xEB)
        found["c2pa-manifest-in-tiny.jpg"] = tiny_jpeg[:2] + manifest + tiny_jpeg[2:]
        found["c2pa-truncated.jpg"] = signed[:8192]
    return found


def _corpus_args(argv: list[str]) -> list[str]:
    """Add the seed corpus unless the command names one; pin -seed unless given."""
    flags = [arg for arg in argv[1:] if arg.startswith("-")]
    paths = [arg for arg in argv[1:] if not arg.startswith("-")]
    if not any(flag.startswith("-seed=") for flag in flags):
        flags.append("-seed=1")
    if paths and all(Path(path).is_file() for path in paths):
        return [argv[0], *flags, *paths]  # replaying given inputs
    if not paths:
        paths = [tempfile.mkdtemp(prefix="fuzz-intake-")]
    corpus = Path(paths[0])
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for name, data in seeds().items():
            (corpus / name).write_bytes(data)
    return [argv[0], *flags, *paths]


def main() -> None:
    atheris.Setup(_corpus_args(sys.argv), test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
