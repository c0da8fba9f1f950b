"""Run every performance benchmark next to its bare reference and print one table (also bench/README.md).

    .venv/bin/python bench/run_all.py [--quick] [--no-readme]

Each part runs in a fresh process, so one part's memory and core pinning do not leak into the next:

- verify of a credentialed 1024x1024 JPEG, and of a stripped disclosed copy (soft-binding lookup), next to a
  bare c2pa Reader + Pillow decode of the credentialed file (bench/verify.py; one core);
- disclose of the 1024 px JPEG next to bare c2pa signing of the same file (`c2pa.Builder(...).sign`, no
  watermark, fingerprint or registry; one core);
- score per 1024 px image next to face_recognition's detect + encode (bench/scoring.py; one core);
- registry lookup at 10^4, 10^5 and 10^6 entries next to a bare numpy Hamming scan of the same arrays
  (bench/registry.py; one core);
- `POST /v1/verify` throughput at 1, 8 and 32 concurrent clients next to in-process `verify_image` on one core
  (bench/api_load.py);
- recording one audit event, chained, next to the plain INSERT it was before the chain, on SQLite and
  PostgreSQL, alone and with 4 writer processes, and `audit verify`'s rate (bench/audit.py).

ratio = ours / reference: for times above 1 means slower than the reference, for throughput below 1 does.
--quick skips 10^6 entries and shortens every part (about 1 minute instead of about 2 on the 2-core machine).
Both write bench/README.md with the date and the machine unless --no-readme is given.
"""

import argparse
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PACKAGES = [
    "headshot",
    "c2pa-python",
    "pillow",
    "numpy",
    "dlib-bin",
    "face-recognition",
    "fastapi",
    "uvicorn",
    "httpx",
    "sqlalchemy",
]
README_HEAD = """# Benchmarks

Each script prints its own tables; `run_all.py` runs the performance ones next to their bare references and
collects them into one table, written here with the date and the machine. `ratio = ours / reference`: for
times, above 1 means slower than the reference; for API throughput, below 1 does.

| script | what |
|---|---|
| `run_all.py [--quick] [--no-readme]` | everything below that has a reference, as one table (this file) |
| `verify.py [--repeat 50] [--json]` | `verify_image`, credentialed 1024 px JPEG, vs bare c2pa Reader + Pillow decode |
| `registry.py [--images N] [--queries Q] [--json]` | `DatabaseRegistry.candidates` on SQLite vs a bare numpy scan |
| `scoring.py [--repeat 5] [--pack 100]` | likeness accuracy, cost per headshot vs face_recognition, a 100-image pack |
| `api_load.py [--clients 1,8,32] [--seconds 10] [--json]` | `POST /v1/verify` under concurrent load, real service |
| `robustness.py [--images 40]` | soft-binding recovery after transforms, false recoveries, cost |
| `generation.py [--model DIR] [--gpu]` | the whole pack on the tiny random SDXL; `--gpu`: real SDXL, 40 headshots |
| `scale.py [--images N] [--jobs 10] [--json]` | 1 and 2 API processes on PostgreSQL, staleness, dispatch (README) |
| `audit.py [--events 200] [--writers 4] [--verify N] [--json]` | chaining an audit event vs a plain INSERT |

How each row is measured:

- **verify / disclose / score / registry** run in a fresh process pinned to one core; times are medians.
  The verify reference is a bare `c2pa.Reader` (`json()` + validation state) plus a full Pillow decode of the
  credentialed file; the stripped copy is the disclosed image re-encoded by Pillow (JPEG q92, no metadata), so
  `verify_image` finds no credentials and recovers the disclosure from the watermark and fingerprint registry
  (in-memory, a handful of entries). The disclose reference signs the same source JPEG with
  `c2pa.Builder(manifest).sign` (the `c2pa.created` action only, thumbnails off as in `disclose_image`);
  ours adds the watermark re-encode, fingerprints, XMP, the full manifest, reading it back and registering.
  The score reference is `face_recognition.face_locations` (upsample 1) + `face_encodings`.
  Registry rows are random fingerprints in SQLite; the reference scans the very arrays the registry holds.
- **API** starts the real service (`headshot serve`, one uvicorn process) on 127.0.0.1 with a temporary
  `HEADSHOT_DATA_DIR` and the per-key rate limit lifted (120/min by default would answer 429), and drives it
  from an asyncio + httpx load generator in the same machine, which competes with the service for its cores.
  Each client sends its next request when the last one is answered. The reference is in-process
  `provenance.verify_image` on one core with the service's trust anchors and registry.
- **audit** times transactions that each record one audit event and commit (`service.deps.audit`, chained:
  head row UPDATE ... RETURNING, SHA-256, INSERT, head UPDATE) next to the same event INSERTed with its chain
  fields filled in, on a SQLite file and a fresh PostgreSQL database on 127.0.0.1 (no core pinning: 4 writer
  processes also run at once). `audit verify` is timed on a chain grown in bulk to `--verify` events.
"""


def load_bench(name: str):
    """A bench script as a module (by path: bench/scoring.py would otherwise shadow the scoring package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_core() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def provenance_part(repeat: int, disclose_repeat: int) -> dict:
    """verify (credentialed and stripped) and disclose, each next to its bare reference, on one core."""
    one_core()
    sys.path.insert(0, str(ROOT))
    import c2pa
    from PIL import Image

    from provenance import CredentialStore, disclose_image, verify_image
    from provenance.disclose import _signing_context
    from provenance.registry import InMemoryRegistry

    verify = load_bench("verify")
    result = verify.measure(repeat)
    source = verify.credentialed_source()
    references = [hashlib.sha256(verify.FACE.read_bytes()).hexdigest()]
    with tempfile.TemporaryDirectory() as directory:
        store = CredentialStore(Path(directory))
        identity, trust, registry = store.signing_identity(), store.trust_anchors(), InMemoryRegistry()
        disclosed = disclose_image(source, identity, registry, reference_hashes=references).data
        stripped = io.BytesIO()
        Image.open(io.BytesIO(disclosed)).save(stripped, "JPEG", quality=92)
        stripped = stripped.getvalue()

        def ours_stripped() -> None:
            assert verify_image(stripped, trust, registry=registry).label == "ai_soft_binding"

        def ours_disclose() -> None:
            disclose_image(source, identity, registry, reference_hashes=references)

        manifest = {
            "claim_generator_info": [{"name": "bench", "version": "1"}],
            "assertions": [
                {
                    "label": "c2pa.actions.v2",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/"
                                "trainedAlgorithmicMedia",
                            }
                        ]
                    },
                }
            ],
        }

        def bare_sign() -> None:
            builder = c2pa.Builder(manifest, context=_signing_context())
            builder.sign(identity.c2pa_signer(), "image/jpeg", io.BytesIO(source), io.BytesIO())

        result["stripped_s"] = verify.timed(ours_stripped, repeat)
        result["disclose_s"] = verify.timed(ours_disclose, disclose_repeat)
        result["bare_sign_s"] = verify.timed(bare_sign, disclose_repeat)
    result.update(repeat=repeat, disclose_repeat=disclose_repeat)
    return result


def scoring_part(repeat: int, images: int) -> dict:
    sys.path.insert(0, str(ROOT))
    from scoring.faces import DlibBackend

    ms, why = load_bench("scoring").speed(DlibBackend(), repeat, images)
    return {"ms": ms, "why": why, "repeat": repeat, "images": images}


def run_part(command: list[str], console: Console) -> dict:
    """Run one part in a fresh process; its last stdout line is the JSON result."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *command], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        console.print(f"[red]failed[/red] ({seconds:.0f} s): {' '.join(command)}: {tail[0]}", highlight=False)
        return {"error": tail[0]}
    console.print(f"done ({seconds:.0f} s): {' '.join(command)}", highlight=False)
    return json.loads(done.stdout.strip().splitlines()[-1])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds * 1000:.0f} ms"


def collect(quick: bool, console: Console) -> list[tuple[str, str, str, str, str]]:
    me = str(Path(__file__).resolve())
    rows: list[tuple[str, str, str, str, str]] = []

    def failed(benchmark: str, result: dict) -> bool:
        if "error" in result:
            rows.append((benchmark, "failed", result["error"][:80], "-", "-"))
        return "error" in result

    repeat, disclose_repeat = (10, 3) if quick else (30, 10)
    result = run_part(
        [me, "--part", "provenance", "--repeat", str(repeat), "--disclose-repeat", str(disclose_repeat)], console
    )
    if not failed("verify / disclose", result):
        bare = result["bare_s"]
        reference = f"{ms(bare)} (bare c2pa Reader + Pillow decode)"
        rows.append(
            (
                "verify",
                f"credentialed 1024 px JPEG, median of {repeat}",
                ms(result["ours_s"]),
                reference,
                f"{result['ours_s'] / bare:.2f}",
            )
        )
        rows.append(
            (
                "verify",
                "stripped disclosed copy (soft-binding lookup)",
                ms(result["stripped_s"]),
                reference,
                f"{result['stripped_s'] / bare:.2f}",
            )
        )
        rows.append(
            (
                "disclose",
                f"1024 px JPEG, median of {disclose_repeat}",
                ms(result["disclose_s"]),
                f"{ms(result['bare_sign_s'])} (bare c2pa Builder.sign)",
                f"{result['disclose_s'] / result['bare_sign_s']:.2f}",
            )
        )

    repeat, images = (1, 3) if quick else (2, 10)
    result = run_part([me, "--part", "scoring", "--repeat", str(repeat), "--images", str(images)], console)
    if not failed("score", result):
        cost = result["ms"]
        theirs = cost.get("theirs")
        reference = f"{theirs:.0f} ms (face_recognition detect + encode)" if theirs else f"- ({result['why']})"
        for measure, ours in (
            (f"detect + embed per 1024 px image ({images} images x {repeat})", cost["detect"] + cost["embed"]),
            ("score_candidate per 1024 px image, end to end", cost["score"]),
        ):
            rows.append(("score", measure, f"{ours:.0f} ms", reference, f"{ours / theirs:.2f}" if theirs else "-"))

    sizes = (10**4, 10**5) if quick else (10**4, 10**5, 10**6)
    queries = 100 if quick else 200
    for size in sizes:
        result = run_part(
            [str(BENCH / "registry.py"), "--images", str(size), "--queries", str(queries), "--json"], console
        )
        if failed("registry", result):
            continue
        rows.append(
            (
                "registry",
                f"lookup, 10^{len(str(size)) - 1} entries (median of {queries})",
                ms(result["ours_s"]),
                f"{ms(result['bare_s'])} (numpy Hamming scan, 8 columns)",
                f"{result['ours_s'] / result['bare_s']:.2f}",
            )
        )
    if "error" not in result:
        rows.append(
            (
                "registry",
                f"start-up: load index of 10^{len(str(result['images'])) - 1} entries "
                f"({result['index_bytes'] / 1e6:.0f} MB)",
                f"{result['startup_s']:.2f} s",
                "-",
                "-",
            )
        )

    seconds = 4 if quick else 10
    result = run_part([str(BENCH / "api_load.py"), "--seconds", str(seconds), "--json"], console)
    if not failed("api", result):
        rate = result["in_process_per_s"]
        for run in result["runs"]:
            errors = f", {run['errors']} errors" if run["errors"] else ""
            rows.append(
                (
                    "api",
                    f"POST /v1/verify, {run['clients']} client{'s' if run['clients'] > 1 else ''}, {seconds} s",
                    f"{run['rps']:.1f} req/s (p50 {run['p50_s'] * 1000:.0f} / p95 {run['p95_s'] * 1000:.0f} / "
                    f"p99 {run['p99_s'] * 1000:.0f} ms{errors})",
                    f"{rate:.1f} calls/s (verify_image in process, 1 core)",
                    f"{run['rps'] / rate:.2f}",
                )
            )
    events = 50 if quick else 200
    result = run_part([str(BENCH / "audit.py"), "--events", str(events), "--json"], console)
    if not failed("audit", result):
        for database, measured in result.items():
            single, reference = measured["single_chained_ms"], measured["single_reference_ms"]
            rows.append(
                (
                    "audit",
                    f"record one event + commit, {database} (median of {events})",
                    f"{single:.2f} ms",
                    f"{reference:.2f} ms (the same event, plain INSERT)",
                    f"{single / reference:.2f}",
                )
            )
            chained, plain = measured["concurrent_chained_per_s"], measured["concurrent_reference_per_s"]
            rows.append(
                (
                    "audit",
                    f"4 writer processes at once, {database}",
                    f"{chained:.0f} events/s",
                    f"{plain:.0f} events/s (plain INSERTs)",
                    f"{chained / plain:.2f}",
                )
            )
            rows.append(
                (
                    "audit",
                    f"audit verify, {measured['verified_events']:,} events, {database}",
                    f"{measured['verify_per_s']:,.0f} events/s",
                    "-",
                    "-",
                )
            )
    return rows


def machine() -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().split()
    ram = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1024**2
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {
        "date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
        "cpu": f"{model}, {os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable)",
        "ram": f"{ram:.1f} GiB",
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "packages": ", ".join(versions),
        "commit": commit.stdout.strip() + (" (with uncommitted changes)" if dirty else ""),
    }


def markdown(rows, info: dict[str, str], command: str, seconds: float, load: tuple[float, float]) -> str:
    lines = [
        README_HEAD,
        "## Latest run",
        "",
        f"- command: `{command}` ({seconds / 60:.1f} min)",
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}, {info['ram']} RAM, {info['os']}",
        f"- load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}",
        f"- Python {info['python']}; {info['packages']}",
        f"- commit: {info['commit']}",
        "",
        "| benchmark | measure | ours | reference | ratio |",
        "|---|---|---|---|---|",
        *(f"| {' | '.join(cell.replace('|', '/') for cell in row)} |" for row in rows),
        "",
        "The service is a single uvicorn process and this machine has "
        f"{os.cpu_count()} cores, shared by the service and the load generator. A load average above 0 before the "
        "run means other work shared the cores too; rerun on an idle machine for numbers to compare.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip 10^6 entries and shorten every part")
    parser.add_argument("--no-readme", action="store_true", help="print the table only; leave bench/README.md as is")
    parser.add_argument("--part", choices=["provenance", "scoring"], help=argparse.SUPPRESS)  # internal
    parser.add_argument("--repeat", type=int, default=30, help=argparse.SUPPRESS)
    parser.add_argument("--disclose-repeat", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=10, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part == "provenance":
        print(json.dumps(provenance_part(args.repeat, args.disclose_repeat)))
        return
    if args.part == "scoring":
        print(json.dumps(scoring_part(args.repeat, args.images)))
        return

    console = Console(width=160, stderr=True)
    command = ".venv/bin/python bench/run_all.py" + (" --quick" if args.quick else "")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    rows = collect(args.quick, console)
    seconds = time.perf_counter() - start
    load = (load_before, os.getloadavg()[0])
    info = machine()

    table = Table(title=f"headshot benchmarks ({info['date']}; {info['cpu']}, {info['ram']} RAM)")
    for column in ("benchmark", "measure", "ours", "reference", "ratio"):
        table.add_column(column, justify="right" if column == "ratio" else "left")
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)
    print(f"{command}: {seconds / 60:.1f} min; load average before / after {load[0]:.2f} / {load[1]:.2f}")
    if not args.no_readme:
        (BENCH / "README.md").write_text(markdown(rows, info, command, seconds, load))
        print(f"written to {BENCH / 'README.md'}")


if __name__ == "__main__":
    main()
