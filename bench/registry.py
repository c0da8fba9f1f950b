"""Registry lookup at scale: a SQLite registry of 10^6 images, queried next to a bare numpy Hamming scan.

    .venv/bin/python bench/registry.py [--images 1000000] [--queries 200] [--json]

Reports fill time, start-up time (loading the fingerprint index from the database), index memory and
process RSS, and the median lookup time of `DatabaseRegistry.candidates` next to a brute-force numpy scan
over the same fingerprints (7 frame variants + 1 face hash per image). Target: within 3x of the scan.
"""

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import insert  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provenance.fingerprint import Fingerprints  # noqa: E402
from provenance.soft_binding import FACE_THRESHOLD, FRAME_THRESHOLD  # noqa: E402
from service.database import engine_for  # noqa: E402
from service.registry import DatabaseRegistry, RegisteredImage, _signed  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(engine, count: int, rng: np.random.Generator) -> None:
    now = dt.datetime.now(dt.UTC)
    batch = 50_000
    for start in range(0, count, batch):
        size = min(batch, count - start)
        frames = rng.integers(0, 2**63, size=(size, 7), dtype=np.uint64).astype(">u8")
        faces = rng.integers(-(2**63), 2**63 - 1, size=size, dtype=np.int64)
        pdq = rng.integers(0, 256, size=(size, 32), dtype=np.uint8)
        rows = [
            {
                "payload": _signed(int(start + i) * 2654435761 % 2**64),
                "manifest_label": f"urn:c2pa:bench-{start + i}",
                "frame_hashes": frames[i].tobytes(),
                "face_hash": int(faces[i]),
                "pdq_hash": pdq[i].tobytes(),
                "algorithm": "tile-v2",
                "signed_sha256": "0" * 64,
                "mime_type": "image/jpeg",
                "watermarked": True,
                "manifest_json": "{}",
                "created_at": now,
            }
            for i in range(size)
        ]
        with engine.begin() as connection:
            connection.execute(insert(RegisteredImage), rows)


def measure(images: int, queries: int) -> dict:
    """Fill a SQLite registry with `images` random entries and time `queries` lookups next to the bare scans."""
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'registry.db'}"
        engine = engine_for(url)
        start = time.perf_counter()
        fill(engine, images, rng)
        fill_seconds = time.perf_counter() - start

        rss_before = rss_mb()
        start = time.perf_counter()
        registry = DatabaseRegistry(engine)
        startup_seconds = time.perf_counter() - start
        rss_after = rss_mb()

        index = registry._index
        size = len(index)
        frames, faces = index._frames[:, :size], index._faces[:size]  # the very arrays the registry scans
        queries = [
            Fingerprints(frame=(int(rng.integers(0, 2**63, dtype=np.uint64)),), face=int(rng.integers(0, 2**63)))
            for _ in range(queries)
        ]

        def bare_scan(query: Fingerprints) -> np.ndarray:
            distance = np.bitwise_count(frames[0] ^ np.uint64(query.frame[0]))
            for column in frames[1:]:
                np.minimum(distance, np.bitwise_count(column ^ np.uint64(query.frame[0])), out=distance)
            face_distance = np.bitwise_count(faces ^ np.uint64(query.face))
            return np.flatnonzero((distance <= FRAME_THRESHOLD) | (face_distance <= FACE_THRESHOLD))

        def timed(function) -> float:
            samples = []
            for query in queries:
                begin = time.perf_counter()
                function(query)
                samples.append(time.perf_counter() - begin)
            return statistics.median(samples)

        bare = timed(bare_scan)
        ours = timed(lambda query: registry.candidates(query, FRAME_THRESHOLD, FACE_THRESHOLD))
        single = timed(lambda query: np.bitwise_count(faces ^ np.uint64(query.face)).argmin())
        index_bytes = index.nbytes()
    return {
        "images": size,
        "fill_s": fill_seconds,
        "startup_s": startup_seconds,
        "index_bytes": index_bytes,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_after,
        "single_s": single,
        "bare_s": bare,
        "ours_s": ours,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the measurements as one JSON line (run_all.py)")
    args = parser.parse_args()
    result = measure(args.images, args.queries)
    if args.json:
        print(json.dumps(result))
        return
    size, fill_seconds, startup_seconds = result["images"], result["fill_s"], result["startup_s"]
    rss_before, rss_after, single, bare, ours = (
        result[k] for k in ("rss_before_mb", "rss_after_mb", "single_s", "bare_s", "ours_s")
    )
    console = Console(width=120)
    table = Table(title=f"Registry with {size:,} images (SQLite), one core")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("fill (bulk insert)", f"{fill_seconds:.1f} s")
    table.add_row("start-up: load fingerprint index from the database", f"{startup_seconds:.2f} s")
    table.add_row("index memory (8 x 64-bit hashes per image)", f"{result['index_bytes'] / 1e6:.0f} MB")
    table.add_row("process RSS before / after loading", f"{rss_before:.0f} / {rss_after:.0f} MB")
    table.add_row("bare numpy scan of one 64-bit column (reference)", f"{single * 1000:.2f} ms")
    table.add_row("bare numpy scan of the same 8 columns", f"{bare * 1000:.2f} ms")
    table.add_row("DatabaseRegistry.candidates (refresh + scan + fetch)", f"{ours * 1000:.2f} ms")
    table.add_row("ratio to the bare scan of the same fingerprints", f"{ours / bare:.2f} (target <= 3)")
    console.print(table)


if __name__ == "__main__":
    main()
