"""Verify cost per image: `provenance.verify_image` next to a bare c2pa Reader plus a Pillow decode.

    .venv/bin/python bench/verify.py [--repeat 50] [--json]

Target: ours within 1.5x of the bare reference on a credentialed 1024x1024 JPEG.
"""

import argparse
import hashlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import c2pa
from PIL import Image
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenance import CredentialStore, disclose_image, verify_image
from provenance.registry import InMemoryRegistry

FACE = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "img1.jpg"


def timed(function, repeat: int) -> float:
    """Median seconds of `repeat` calls, after one warm-up call."""
    function()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def credentialed_source() -> bytes:
    """The 1024x1024 JPEG (quality 92) that every verify and disclose measurement starts from."""
    with Image.open(FACE) as face:
        source = io.BytesIO()
        face.convert("RGB").resize((1024, 1024)).save(source, "JPEG", quality=92)
    return source.getvalue()


def measure(repeat: int) -> dict:
    """Median seconds of the bare reference and of `verify_image`, on a freshly disclosed 1024x1024 JPEG."""
    with tempfile.TemporaryDirectory() as directory:
        store = CredentialStore(Path(directory))
        signed = disclose_image(
            credentialed_source(),
            store.signing_identity(),
            InMemoryRegistry(),
            reference_hashes=[hashlib.sha256(FACE.read_bytes()).hexdigest()],
        ).data
        trust = store.trust_anchors()
        context = trust.c2pa_context()

        def bare() -> None:
            with c2pa.Reader("image/jpeg", io.BytesIO(signed), context=context) as reader:
                reader.json()
                reader.get_validation_state()
            Image.open(io.BytesIO(signed)).load()

        def ours() -> None:
            assert verify_image(signed, trust).label == "ai_verified"

        return {"bytes": len(signed), "bare_s": timed(bare, repeat), "ours_s": timed(ours, repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--json", action="store_true", help="print the measurements as one JSON line (run_all.py)")
    args = parser.parse_args()

    result = measure(args.repeat)
    if args.json:
        print(json.dumps(result))
        return
    signed_bytes, reference, measured = result["bytes"], result["bare_s"], result["ours_s"]
    table = Table(title=f"verify, credentialed 1024x1024 JPEG ({signed_bytes:,} bytes), median of {args.repeat}")
    table.add_column("what")
    table.add_column("ms / image", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row("bare c2pa Reader + Pillow decode", f"{reference * 1000:.1f}", "1.00")
    table.add_row("headshot verify_image", f"{measured * 1000:.1f}", f"{measured / reference:.2f}")
    Console().print(table)
    print(f"target: ratio <= 1.5 -> {'met' if measured / reference <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
