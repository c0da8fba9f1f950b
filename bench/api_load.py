"""API throughput: `POST /v1/verify` on the real service under 1, 8 and 32 concurrent clients.

    .venv/bin/python bench/api_load.py [--clients 1,8,32] [--seconds 10] [--max-requests 2000] [--json]

Starts `headshot serve` (one uvicorn process) in a subprocess on a free 127.0.0.1 port with HEADSHOT_DATA_DIR
in a temporary folder and the per-key rate limit lifted, creates a verifier key (`headshot keys create`) and a
credentialed 1024x1024 JPEG (`headshot disclose`) there, then drives the service from an asyncio + httpx load
generator in this process: for each client count, a 1 s warm-up, then requests for `--seconds` (or until
`--max-requests`). Reports requests/s and p50/p95/p99 latency, next to the reference point: in-process
`provenance.verify_image` calls/s on one core on the same file (ratio = API requests/s / in-process calls/s).
The load generator shares the machine's cores with the service.
"""

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from verify import credentialed_source  # noqa: E402

HEADSHOT = str(Path(sys.executable).with_name("headshot"))
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def load(url: str, key: str, image: bytes, clients: int, seconds: float, max_requests: int) -> dict:
    """`clients` concurrent clients, each sending one request after the other; timed after a 1 s warm-up."""
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:

        async def one() -> tuple[float, str | None]:
            start = time.perf_counter()
            response = await client.post("/v1/verify", files={"file": ("photo.jpg", image, "image/jpeg")})
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                return elapsed, f"HTTP {response.status_code}: {response.text[:200]}"
            if response.json()["label"] != "ai_verified":
                return elapsed, f"label {response.json()['label']}"
            return elapsed, None

        async def worker(until: float, record: bool) -> None:
            while time.perf_counter() < until and (not record or len(latencies) + len(errors) < max_requests):
                elapsed, error = await one()
                if record:
                    (errors.append(error) if error else latencies.append(elapsed))

        await asyncio.gather(*(worker(time.perf_counter() + 1.0, False) for _ in range(clients)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(start + seconds, True) for _ in range(clients)))
        wall = time.perf_counter() - start
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": wall,
        "rps": len(latencies) / wall,
        "p50_s": percentile(latencies, 0.50),
        "p95_s": percentile(latencies, 0.95),
        "p99_s": percentile(latencies, 0.99),
    }


def in_process_rate(data_dir: Path, image: bytes, seconds: float) -> float:
    """`verify_image` calls/s on one core, with the service's own trust anchors, limits and registry."""
    os.environ["HEADSHOT_DATA_DIR"] = str(data_dir)
    from provenance import verify_image
    from service.services import Services
    from service.settings import Settings

    settings = Settings()
    services = Services(settings)
    trust, limits, registry = services.trust(), settings.image_limits, services.registry
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cores)})
    try:
        assert verify_image(image, trust, limits, registry=registry).label == "ai_verified"  # warm-up
        calls, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            verify_image(image, trust, limits, name="photo.jpg", registry=registry)
            calls += 1
        return calls / (time.perf_counter() - start)
    finally:
        os.sched_setaffinity(0, cores)


def measure(clients: list[int], seconds: float, max_requests: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        work = Path(directory)
        # the per-key rate limit (120/min by default) is lifted: this measures the service, not its limiter
        env = {**os.environ, "HEADSHOT_DATA_DIR": str(work / "data"), "HEADSHOT_RATE_LIMIT_PER_MINUTE": "100000000"}
        key = subprocess.run(
            [HEADSHOT, "keys", "create", "--role", "verifier", "--name", "bench"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        (work / "source.jpg").write_bytes(credentialed_source())
        subprocess.run(
            [HEADSHOT, "disclose", str(work / "source.jpg"), "-o", str(work / "disclosed.jpg")],
            env=env,
            capture_output=True,
            check=True,
        )
        image = (work / "disclosed.jpg").read_bytes()

        port = free_port()
        url = f"http://{HOST}:{port}"
        with open(work / "serve.log", "wb") as log:
            server = subprocess.Popen(
                [HEADSHOT, "serve", "--host", HOST, "--port", str(port)], env=env, stdout=log, stderr=log
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"the service exited ({server.returncode}): {(work / 'serve.log').read_text()}")
                with contextlib.suppress(httpx.HTTPError):  # not listening yet
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("the service did not answer /healthz within 60 s")
                time.sleep(0.2)
            runs = [asyncio.run(load(url, key, image, n, seconds, max_requests)) for n in clients]
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        rate = in_process_rate(work / "data", image, seconds)
    return {"bytes": len(image), "cores": os.cpu_count(), "in_process_per_s": rate, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrent client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per client count")
    parser.add_argument("--max-requests", type=int, default=2000, help="stop a client count after this many")
    parser.add_argument("--json", action="store_true", help="print the measurements as one JSON line (run_all.py)")
    args = parser.parse_args()
    result = measure([int(n) for n in args.clients.split(",")], args.seconds, args.max_requests)
    if args.json:
        print(json.dumps(result))
        return
    rate = result["in_process_per_s"]
    table = Table(
        title=f"POST /v1/verify, credentialed 1024x1024 JPEG ({result['bytes']:,} bytes), one uvicorn process,\n"
        f"{result['cores']} cores shared with the load generator; reference: verify_image in process, one core"
    )
    for column in ("clients", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "req/s / in-process"):
        table.add_column(column, justify="right")
    for run in result["runs"]:
        table.add_row(
            str(run["clients"]),
            str(run["requests"]),
            str(run["errors"]),
            f"{run['rps']:.1f}",
            *(f"{run[k] * 1000:.0f}" for k in ("p50_s", "p95_s", "p99_s")),
            f"{run['rps'] / rate:.2f}",
        )
    table.add_row("in-process", "", "", f"{rate:.1f}", f"{1000 / rate:.0f}", "", "", "1.00")
    Console(width=120).print(table)
    for run in result["runs"]:
        if run["first_error"]:
            print(f"{run['clients']} clients, first error: {run['first_error']}")


if __name__ == "__main__":
    main()
