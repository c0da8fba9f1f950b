"""Scale-out: `POST /v1/verify` on 1 and 2 replicas over one PostgreSQL registry of 10^6 images, and how
stale one replica's fingerprint index is after another registers an image.

    .venv/bin/python bench/scale.py [--images 1000000] [--clients 8,32] [--seconds 10] [--max-requests 2000]
        [--trials 20] [--jobs 10] [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
        [--broker redis://127.0.0.1:6379/13] [--json]

Creates a fresh PostgreSQL database (dropped afterwards), migrates it with `headshot db upgrade`, creates a
verifier key and discloses the 1024x1024 source JPEG (`headshot disclose`, which registers it), then fills
`registered_images` up to `--images` rows of random fingerprints with one COPY. All processes share that
database and one HEADSHOT_DATA_DIR (signing credentials); the per-key rate limit is lifted.

1. verify: starts `headshot serve` replicas on free 127.0.0.1 ports, one, then a second beside it. For each
   replica, the time until /healthz answers (the service loads the fingerprint index of every row first) and
   the time of its first /v1/verify. Then, for 1 and for 2 replicas, each of two images under each `--clients` count:
   the credentialed JPEG (label ai_verified, read from its C2PA manifest) and a copy stripped of its
   credentials by a Pillow re-encode (JPEG q92, no metadata: label ai_soft_binding, found through the
   watermark and the fingerprint registry). The asyncio + httpx load generator in this process sends each
   request to the next replica in turn; each client sends its next request when the last one is answered,
   timed after a 1 s warm-up for `--seconds` (or until `--max-requests`). The load generator shares the
   machine's cores with the replicas.
2. staleness: process A and process B (this one) each open their own `DatabaseRegistry` on the database
   (B with HEADSHOT_REGISTRY_MAX_STALENESS, default 1 s). In each of `--trials` trials, A registers a new
   entry after a random delay below max_staleness, while B polls `candidates(...)` with the entry's
   fingerprints; the lag runs from A's `add()` returning to B's first `candidates` that returns the entry.
   The bound is max_staleness plus the time of the refresh that finds it. Watermark payload lookups
   (`find_payload`) read the table on every call and are never stale: B checks one as soon as A's `add()` returns.
3. dispatch: the API with HEADSHOT_BROKER_URL (Redis at `--broker`, a database number of its own, flushed)
   and one `headshot worker --queues gpu` and one `--queues cpu`, on the tiny model. Each of `--jobs` train
   jobs (one training step) is sent when the workers are idle; the latency runs from the job's creation to
   the worker's claim (the job's `created_at` and `started_at`), next to the same with the in-process worker
   (no broker). The time the API took to answer the POST is given too.
"""

import argparse
import asyncio
import contextlib
import datetime as dt
import io
import itertools
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import psycopg
from PIL import Image
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from api_load import HEADSHOT, HOST, free_port, percentile  # noqa: E402
from verify import credentialed_source  # noqa: E402

from provenance.fingerprint import FRAME_VARIANTS, Fingerprints  # noqa: E402
from provenance.registry import RegistryEntry  # noqa: E402
from provenance.soft_binding import FACE_THRESHOLD, FRAME_THRESHOLD  # noqa: E402
from service.database import engine_for  # noqa: E402
from service.registry import DatabaseRegistry, _signed  # noqa: E402
from service.settings import Settings  # noqa: E402

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BROKER_URL = "redis://127.0.0.1:6379/13"
COPY_COLUMNS = (
    "payload",
    "manifest_label",
    "frame_hashes",
    "face_hash",
    "signed_sha256",
    "mime_type",
    "watermarked",
    "manifest_json",
    "created_at",
)
Row = tuple[str, str, str]  # (section, measure, value): one line of the printed table


@contextlib.contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database as a SQLAlchemy URL; dropped afterwards, connections and all."""
    name = f"headshot_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fill(url: str, count: int, rng: np.random.Generator) -> None:
    """`count` rows of random fingerprints in the row format of bench/registry.py, through one COPY."""
    now = dt.datetime.now(dt.UTC)
    batch = 50_000
    with (
        psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection,
        connection.cursor() as cursor,
        cursor.copy(f"COPY registered_images ({', '.join(COPY_COLUMNS)}) FROM STDIN") as copy,
    ):
        for start in range(0, count, batch):
            size = min(batch, count - start)
            frames = rng.integers(0, 2**63, size=(size, len(FRAME_VARIANTS)), dtype=np.uint64).astype(">u8").tobytes()
            faces = rng.integers(-(2**63), 2**63 - 1, size=size, dtype=np.int64).tolist()
            width = 8 * len(FRAME_VARIANTS)
            for i in range(size):
                copy.write_row(
                    (
                        _signed((start + i) * 2654435761 % 2**64),
                        f"urn:c2pa:bench-{start + i}",
                        frames[i * width : (i + 1) * width],
                        faces[i],
                        "0" * 64,
                        "image/jpeg",
                        True,
                        "{}",
                        now,
                    )
                )
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as connection:
        connection.execute("ANALYZE registered_images")


def stripped_copy(image: bytes) -> bytes:
    """The disclosed image re-encoded by Pillow (JPEG q92, no metadata): no Content Credentials left."""
    with Image.open(io.BytesIO(image)) as decoded:
        out = io.BytesIO()
        decoded.convert("RGB").save(out, "JPEG", quality=92)
    return out.getvalue()


@dataclass
class Replica:
    process: subprocess.Popen
    url: str
    log: Path
    healthz_s: float = float("nan")
    first_verify_s: float = float("nan")


def start_api(env: dict, log: Path) -> Replica:
    """`headshot serve` on a free port; returns once /healthz answers (the time it took in `healthz_s`)."""
    port = free_port()
    started = time.perf_counter()
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [HEADSHOT, "serve", "--host", HOST, "--port", str(port)], env=env, stdout=output, stderr=output
        )
    replica = Replica(process, f"http://{HOST}:{port}", log)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"a replica exited ({process.returncode}): {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):  # not listening yet
            if httpx.get(f"{replica.url}/healthz", timeout=1).status_code == 200:
                replica.healthz_s = time.perf_counter() - started
                return replica
        time.sleep(0.1)
    raise RuntimeError(f"a replica did not answer /healthz within 120 s: {log.read_text()[-2000:]}")


def start_replica(env: dict, log: Path, key: str, image: bytes) -> Replica:
    """`start_api`, then a first /v1/verify (timed in `first_verify_s`)."""
    replica = start_api(env, log)
    start = time.perf_counter()
    response = httpx.post(
        f"{replica.url}/v1/verify",
        headers={"Authorization": f"Bearer {key}"},
        files={"file": ("photo.jpg", image, "image/jpeg")},
        timeout=120,
    )
    replica.first_verify_s = time.perf_counter() - start
    if response.status_code != 200 or response.json()["label"] != "ai_verified":
        raise RuntimeError(f"a replica's first verify answered {response.status_code}: {response.text[:300]}")
    return replica


def stop(replica: Replica) -> None:
    replica.process.terminate()
    try:
        replica.process.wait(10)
    except subprocess.TimeoutExpired:
        replica.process.kill()
        replica.process.wait()


async def load_replicas(
    urls: list[str], key: str, image: bytes, label: str, clients: int, seconds: float, max_requests: int
) -> dict:
    """As api_load.load, with each request sent to the next replica in turn and the expected label given."""
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors: list[str] = []
    served = [0] * len(urls)
    turn = itertools.count()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120)
            )
            for url in urls
        ]

        async def one() -> tuple[int, float, str | None]:
            replica = next(turn) % len(sessions)
            start = time.perf_counter()
            response = await sessions[replica].post("/v1/verify", files={"file": ("photo.jpg", image, "image/jpeg")})
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                return replica, elapsed, f"HTTP {response.status_code}: {response.text[:200]}"
            if response.json()["label"] != label:
                return replica, elapsed, f"label {response.json()['label']}, expected {label}"
            return replica, elapsed, None

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until and (not record or len(latencies) + len(errors) < max_requests):
                replica, elapsed, error = await one()
                if record:
                    served[replica] += 1
                    (errors.append(error) if error else latencies.append(elapsed))

        await asyncio.gather(*(worker(time.perf_counter() + 1.0, False) for _ in range(clients)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {
        "replicas": len(urls),
        "clients": clients,
        "requests": len(latencies),
        "per_replica": served,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_s": percentile(latencies, 0.50),
        "p95_s": percentile(latencies, 0.95),
    }


def measure_api(
    work: Path, env: dict, key: str, images: dict[str, bytes], clients: list[int], seconds: float, max_requests: int
) -> dict:
    """Start one replica, load it; start a second beside it, load both."""
    replicas: list[Replica] = []
    runs = []
    try:
        for count in (1, 2):
            replicas.append(start_replica(env, work / f"serve-{count}.log", key, images["ai_verified"]))
            urls = [replica.url for replica in replicas]
            for label, image in images.items():
                for n in clients:
                    run = asyncio.run(load_replicas(urls, key, image, label, n, seconds, max_requests))
                    runs.append({"image": label, **run})
    finally:
        for replica in replicas:
            stop(replica)
    startup = [{"healthz_s": replica.healthz_s, "first_verify_s": replica.first_verify_s} for replica in replicas]
    return {"startup": startup, "runs": runs, "server_errors": server_errors(replicas)}


def server_errors(replicas: list[Replica]) -> dict[str, int]:
    """The exceptions the replicas logged (the last line of each traceback), with how often."""
    counts: dict[str, int] = {}
    for replica in replicas:
        for line in replica.log.read_text(errors="replace").splitlines():
            if re.match(r"^[\w.]+(Error|Exception): ", line):
                counts[line] = counts.get(line, 0) + 1
    return counts


def staleness_writer(url: str, pipe) -> None:
    """Process A: for each (entry, delay) it is sent, wait `delay`, register the entry and answer with the
    monotonic time `add()` returned (CLOCK_MONOTONIC: comparable between processes on one machine)."""
    registry = DatabaseRegistry(engine_for(url))
    pipe.send("ready")
    while (message := pipe.recv()) is not None:
        entry, delay = message
        time.sleep(delay)
        registry.add(entry)
        pipe.send(time.monotonic())


def measure_staleness(url: str, trials: int, rng: np.random.Generator) -> dict:
    """Process B (this one) polls its own registry for the entries process A registers."""
    max_staleness = Settings().registry_max_staleness
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    writer = context.Process(target=staleness_writer, args=(url, theirs), daemon=True)
    writer.start()
    try:
        start = time.perf_counter()
        registry = DatabaseRegistry(engine_for(url), max_staleness=max_staleness)
        startup = time.perf_counter() - start
        if not ours.poll(120) or ours.recv() != "ready":
            raise RuntimeError("process A did not open its registry within 120 s")
        lags, finding_calls, payload_found, missed = [], [], 0, 0
        for trial in range(trials):
            frame = tuple(int(value) for value in rng.integers(0, 2**63, size=len(FRAME_VARIANTS), dtype=np.uint64))
            entry = RegistryEntry(
                payload=int(rng.integers(2**62, 2**63, dtype=np.uint64)),  # above every filled row's payload
                manifest_label=f"urn:c2pa:staleness-{trial}",
                fingerprints=Fingerprints(frame=frame, face=int(rng.integers(0, 2**63, dtype=np.uint64))),
                signed_sha256="1" * 64,
                mime_type="image/jpeg",
                manifest={},
            )
            query = Fingerprints(frame=frame[:1], face=entry.fingerprints.face)
            delay = float(rng.uniform(0, max_staleness))
            ours.send((entry, delay))
            deadline = time.monotonic() + delay + max_staleness + 30
            added_at = seen_at = None
            while time.monotonic() < deadline:
                if added_at is None and ours.poll():
                    added_at = ours.recv()
                    payload_found += registry.find_payload(entry.payload) is not None
                call = time.monotonic()
                hits = registry.candidates(query, FRAME_THRESHOLD, FACE_THRESHOLD)
                if any(hit.entry.payload == entry.payload for hit in hits):
                    seen_at = time.monotonic()
                    finding_calls.append(seen_at - call)
                    break
            if added_at is None:  # B saw the row before A's answer arrived (or never)
                if not ours.poll(30):
                    raise RuntimeError("process A did not register an entry within 30 s")
                added_at = ours.recv()
                payload_found += registry.find_payload(entry.payload) is not None
            if seen_at is None:
                missed += 1
            else:
                lags.append(seen_at - added_at)
        ours.send(None)
    finally:
        writer.join(10)
        if writer.is_alive():
            writer.terminate()
            writer.join()
    return {
        "max_staleness_s": max_staleness,
        "trials": trials,
        "missed": missed,
        "startup_s": startup,
        "lag_p50_s": statistics.median(lags) if lags else float("nan"),
        "lag_max_s": max(lags, default=float("nan")),
        "refresh_max_s": max(finding_calls, default=float("nan")),
        "payload_found": payload_found,
    }


def measure(
    admin_url: str,
    broker: str,
    images: int,
    clients: list[int],
    seconds: float,
    max_requests: int,
    trials: int,
    jobs: int,
) -> dict:
    rng = np.random.default_rng(7)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as directory, fresh_database(admin_url) as url:
        work = Path(directory)
        # the per-key rate limit (120/min by default) is lifted: this measures the service, not its limiter
        env = {
            **os.environ,
            "HEADSHOT_DATA_DIR": str(work / "data"),
            "HEADSHOT_DATABASE_URL": url,
            "HEADSHOT_RATE_LIMIT_PER_MINUTE": "100000000",
        }

        def headshot(*arguments: str) -> str:
            return subprocess.run(
                [HEADSHOT, *arguments], env=env, capture_output=True, text=True, check=True
            ).stdout.strip()

        headshot("db", "upgrade")
        key = headshot("keys", "create", "--role", "verifier", "--name", "bench")
        (work / "source.jpg").write_bytes(credentialed_source())
        headshot("disclose", str(work / "source.jpg"), "-o", str(work / "disclosed.jpg"))  # registers it
        disclosed = (work / "disclosed.jpg").read_bytes()
        start = time.perf_counter()
        fill(url, images - 1, rng)
        fill_seconds = time.perf_counter() - start

        kinds = {"ai_verified": disclosed, "ai_soft_binding": stripped_copy(disclosed)}
        api = measure_api(work, env, key, kinds, clients, seconds, max_requests)
        staleness = measure_staleness(url, trials, rng)
        dispatch = measure_dispatch(work, env, broker, jobs) if jobs else {}
    return {
        "cores": os.cpu_count(),
        "load_average_before_after": [load_before, os.getloadavg()[0]],
        "images": images,
        "fill_s": fill_seconds,
        "bytes": {label: len(image) for label, image in kinds.items()},
        "api": api,
        "staleness": staleness,
        "dispatch": dispatch,
    }


CONSENT = {"given_by": "Bench Subject", "scope": ["training", "generation"], "text_version": "bench"}
TRAIN_ONE_STEP = {"steps": 1, "rank": 4, "alpha": 4, "resolution": 64, "checkpoint_every": 1}


def measure_dispatch(work: Path, env: dict, broker: str, jobs: int) -> dict:
    """Train jobs through Celery workers and through the in-process worker: creation to claim."""
    import redis

    def headshot(*arguments: str) -> str:
        return subprocess.run([HEADSHOT, *arguments], env=env, capture_output=True, text=True, check=True).stdout

    model = work / "tiny-sdxl"
    headshot("models", "tiny", str(model))
    env = {**env, "HEADSHOT_SDXL_MODEL": str(model), "OMP_NUM_THREADS": "1"}
    studio = headshot("keys", "create", "--role", "studio", "--name", "bench-studio").strip()
    queue = redis.Redis.from_url(broker)
    queue.flushdb()  # the database number is the benchmark's own (--broker)
    results = {}
    try:
        for mode in ("celery", "in-process"):
            mode_env = {**env, "HEADSHOT_BROKER_URL": broker} if mode == "celery" else env
            processes = []
            try:
                api = start_api(mode_env, work / f"dispatch-{mode}-api.log")
                processes.append(api.process)
                if mode == "celery":
                    for queue_name in ("gpu", "cpu"):
                        log = work / f"dispatch-worker-{queue_name}.log"
                        with open(log, "wb") as output:
                            processes.append(
                                subprocess.Popen(
                                    [HEADSHOT, "worker", "--queues", queue_name, "--name", f"bench-{queue_name}"],
                                    env=mode_env,
                                    stdout=output,
                                    stderr=output,
                                )
                            )
                        wait_for_line(log, " ready.", 120)
                results[mode] = run_train_jobs(api.url, studio, jobs)
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    try:
                        process.wait(20)
                    except subprocess.TimeoutExpired:
                        process.kill()
    finally:
        queue.flushdb()
    return results


def wait_for_line(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"{log.name} never said {text!r}: {log.read_text(errors='replace')[-2000:]}")


def run_train_jobs(url: str, key: str, jobs: int) -> dict:
    """`jobs` one-step train jobs, one after the other, each sent with every worker idle."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        subject = client.post("/v1/subjects", json={"display_name": "Bench", "consent": CONSENT}).json()["id"]
        photo = (ROOT.parent / "shared" / "data" / "faces" / "img1.jpg").read_bytes()
        upload = client.post(f"/v1/subjects/{subject}/photos", files={"file": ("img1.jpg", photo, "image/jpeg")})
        if not upload.json().get("accepted"):
            raise RuntimeError(f"the bench photo was not accepted: {upload.text}")
        latencies, answers = [], []
        for _ in range(jobs):
            start = time.perf_counter()
            created = client.post(f"/v1/subjects/{subject}/jobs", json={"kind": "train", "parameters": TRAIN_ONE_STEP})
            answers.append(time.perf_counter() - start)
            job_id = created.json()["id"]
            deadline = time.monotonic() + 120
            while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] in ("queued", "running"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"job {job_id} did not finish: {job}")
                time.sleep(0.05)
            if job["status"] != "succeeded":
                raise RuntimeError(f"job {job_id} ended {job['status']}: {job['error']}")
            latencies.append(
                (
                    dt.datetime.fromisoformat(job["started_at"]) - dt.datetime.fromisoformat(job["created_at"])
                ).total_seconds()
            )
    return {
        "jobs": jobs,
        "p50_s": statistics.median(latencies),
        "max_s": max(latencies),
        "post_p50_s": statistics.median(answers),
    }


def dispatch_rows(dispatch: dict) -> list[Row]:
    names = {"celery": "Celery (Redis), 1 gpu + 1 cpu worker", "in-process": "in-process worker (no broker)"}
    return [
        (
            "dispatch",
            f"{names[mode]}: job created -> worker claims it ({result['jobs']} train jobs)",
            f"p50 {result['p50_s'] * 1000:.0f} / max {result['max_s'] * 1000:.0f} ms "
            f"(POST answered in {result['post_p50_s'] * 1000:.0f} ms)",
        )
        for mode, result in dispatch.items()
    ]


def verify_rows(result: dict) -> list[Row]:
    images = result["images"]
    before, after = result["load_average_before_after"]
    rows: list[Row] = [
        ("setup", "load average (1 min) before / after the run", f"{before:.2f} / {after:.2f}"),
        ("setup", f"fill registered_images to {images:,} rows (one COPY)", f"{result['fill_s']:.1f} s"),
    ]
    for number, startup in enumerate(result["api"]["startup"], 1):
        rows.append(
            (
                "start-up",
                f"replica {number}: /healthz answers (index of {images:,} loaded) / first verify",
                f"{startup['healthz_s']:.1f} s / {startup['first_verify_s']:.1f} s",
            )
        )
    names = {"ai_verified": "credentialed JPEG", "ai_soft_binding": "stripped copy"}
    for run in result["api"]["runs"]:
        replicas = f"{run['replicas']} replica{'s' if run['replicas'] > 1 else ''}"
        split = f", split {'/'.join(map(str, run['per_replica']))}" if run["replicas"] > 1 else ""
        errors = f", {run['errors']} errors" if run["errors"] else ""
        rows.append(
            (
                "verify",
                f"{replicas}, {names[run['image']]} ({run['image']}), {run['clients']} clients, {run['wall_s']:.0f} s",
                f"{run['rps']:.1f} req/s (p50 {run['p50_s'] * 1000:.0f} / p95 {run['p95_s'] * 1000:.0f} ms)"
                f"{split}{errors}",
            )
        )
    return rows


def staleness_rows(staleness: dict) -> list[Row]:
    bound = staleness["max_staleness_s"] + staleness["refresh_max_s"]
    lag_max = staleness["lag_max_s"]
    missed = f", {staleness['missed']} never seen" if staleness["missed"] else ""
    return [
        ("staleness", "process B: DatabaseRegistry start-up (index load)", f"{staleness['startup_s']:.1f} s"),
        (
            "staleness",
            f"A adds, B's candidates() first returns it ({staleness['trials']} trials)",
            f"p50 {staleness['lag_p50_s']:.2f} / max {lag_max:.2f} s{missed}",
        ),
        (
            "staleness",
            "bound: max_staleness + refresh time (max of the finding calls)",
            f"{staleness['max_staleness_s']:.2f} + {staleness['refresh_max_s']:.3f} = {bound:.2f} s "
            f"({'held' if lag_max <= bound and not staleness['missed'] else 'NOT held'})",
        ),
        (
            "staleness",
            "watermark payload lookup (find_payload) right after A's add()",
            f"found {staleness['payload_found']}/{staleness['trials']}: reads the table, never stale",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000, help="rows in registered_images")
    parser.add_argument("--clients", default="8,32", help="comma-separated concurrent client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--max-requests", type=int, default=2000, help="stop a run after this many requests")
    parser.add_argument("--trials", type=int, default=20, help="staleness trials")
    parser.add_argument("--jobs", type=int, default=10, help="train jobs for the dispatch latency (0: skip it)")
    parser.add_argument("--postgres", default=POSTGRES_ADMIN_URL, help="admin URL; a database is created beside")
    parser.add_argument("--broker", default=BROKER_URL, help="Redis for the Celery run (its database is flushed)")
    parser.add_argument("--json", action="store_true", help="print the measurements as one JSON line")
    args = parser.parse_args()
    if args.images < 1:
        parser.error("--images must be at least 1 (the disclosed image)")
    clients = [int(n) for n in args.clients.split(",")]
    result = measure(
        args.postgres, args.broker, args.images, clients, args.seconds, args.max_requests, args.trials, args.jobs
    )
    if args.json:
        print(json.dumps(result))
        return
    rows = verify_rows(result) + staleness_rows(result["staleness"]) + dispatch_rows(result["dispatch"])
    table = Table(
        title=f"headshot scale-out on PostgreSQL, {result['images']:,} registered images, {result['cores']} cores "
        "shared by the replicas and the load generator;\ncredentialed JPEG "
        f"{result['bytes']['ai_verified']:,} bytes, stripped copy {result['bytes']['ai_soft_binding']:,} bytes"
    )
    for column in ("section", "measure"):
        table.add_column(column)
    table.add_column("value", justify="right")
    for row in rows:
        table.add_row(*row)
    Console(width=140).print(table)
    for run in result["api"]["runs"]:
        if run["first_error"]:
            print(f"{run['replicas']} replicas, {run['image']}, {run['clients']} clients: {run['first_error']}")
    for line, count in result["api"]["server_errors"].items():
        print(f"logged by the replicas {count}x: {line}")


if __name__ == "__main__":
    main()
