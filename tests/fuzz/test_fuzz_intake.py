"""Runs the atheris intake fuzz target (fuzz_intake.py) for a bounded time in a subprocess.

HEADSHOT_FUZZ_SECONDS sets the time (default 45). A crashing input is kept as crash-<sha1> in the test's
temporary directory and its path is in the failure message; replay it with
`python tests/fuzz/fuzz_intake.py crash-<sha1>`.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

TARGET = Path(__file__).with_name("fuzz_intake.py")


def test_fuzz_intake(tmp_path):
    seconds = int(os.environ.get("HEADSHOT_FUZZ_SECONDS", "45"))
    corpus = tmp_path / "corpus"
    command = [
        sys.executable,
        str(TARGET),
        f"-max_total_time={seconds}",
        "-timeout=20",  # one input taking longer is a finding (a hang)
        "-rss_limit_mb=3072",
        "-seed=1",
        "-print_final_stats=1",
        f"-artifact_prefix={tmp_path}/",
        str(corpus),
    ]
    # Started from a small shell that forks it: libFuzzer's -rss_limit_mb reads ru_maxrss, which a process
    # forked straight from this one (several GB after other test files ran in it) would inherit.
    process = subprocess.run(
        ["/bin/sh", "-c", '"$@"; exit $?', "sh", *command],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=seconds + 180,
        env=os.environ | {"PYTHONPATH": str(TARGET.parents[2])},
    )
    log = "\n".join(line for line in process.stderr.splitlines() if not line.startswith("INFO: Instrumenting"))
    crashes = sorted(
        str(path) for path in tmp_path.glob("*-*") if path.name.split("-")[0] in ("crash", "timeout", "oom", "leak")
    )
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    coverage = re.findall(r"cov: (\d+) ft: (\d+) corp: (\d+)", log)
    if done:
        runs, elapsed = int(done[1]), max(1, int(done[2]))
        cov, ft, corp = coverage[-1] if coverage else ("?", "?", "?")
        print(f"fuzz_intake: {runs} executions in {elapsed} s ({runs // elapsed}/s), cov {cov}, ft {ft}, corpus {corp}")
    assert process.returncode == 0 and not crashes, (
        f"fuzz target failed (rc {process.returncode}), {crashes}:\n{log[-6000:]}"
    )
    assert done and int(done[1]) > 0, log[-3000:]
