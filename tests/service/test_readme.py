"""The README as a newcomer follows it: its usage lines are the CLI's, and its studio walk-through runs."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FACES
from tests.readme import GENERATED, README, cli, line_for, readme_usage_lines, usage_line, walk_through

ONE_PERSON = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg"]  # one person (faces/master.csv)


def test_usage_lines_are_the_commands_own():
    """The lines of the commands that make, score and hand out headshots are generated from their options
    (`python -m tests.readme` rewrites them); every command has a line."""
    lines = readme_usage_lines(README.read_text())
    for name in GENERATED:
        assert lines[line_for(lines, name)] == usage_line(name), "run: .venv/bin/python -m tests.readme"
    for name in cli().commands:
        line_for(lines, name)  # raises unless exactly one line documents it


def test_one_name_per_thing():
    """Training steps and denoising steps never share a flag; the CLI says what the job API says."""
    pack, train, generate = (usage_line(name) for name in ("pack", "train", "generate"))
    for flag in ("--top-k", "--inference-steps", "--learning-rate", "--checkpoint-every", "--licensed"):
        assert flag in pack
    assert "--steps" in train and "--inference-steps" not in train
    assert "--inference-steps" in generate and "--steps " not in generate  # generate trains nothing
    assert not any(old in f"{pack} {train} {generate}" for old in ("--top ", "--lr ", "--top]", "--lr]"))


def _free_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        return listener.getsockname()[1]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through uses curl")
def test_studio_walk_through_runs_as_written(tmp_path):
    """The README's studio block, extracted and run by bash in an empty folder with photos of one person:
    a real `headshot serve` process, the tiny model, curl. Only the port changes (a free one instead of 8000,
    so that parallel runs do not meet)."""
    for number, name in enumerate(ONE_PERSON, start=1):
        shutil.copy(FACES / name, tmp_path / f"me-{number}.jpg")
    port = _free_port()
    script = walk_through(README.read_text())
    assert script.count("127.0.0.1:8000") >= 8 and "headshot serve" in script
    environment = {name: value for name, value in os.environ.items() if not name.startswith("HEADSHOT_")}
    environment |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HEADSHOT_PORT": str(port),
        "HF_HUB_OFFLINE": "1",
    }
    run = subprocess.Popen(
        ["bash", "-e", "-c", script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")],
        cwd=tmp_path,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the server it starts in the background goes with it
    )
    try:
        output, _ = run.communicate(timeout=420)
    finally:  # the server, if the script stopped before its `kill`
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGTERM)
    assert run.returncode == 0, output
    report = json.loads((tmp_path / "report.json").read_text())
    assert len(report["images"]) == 2 and len(report["top_k"]) == 1
    assert [reference["accepted"] for reference in report["references"]] == [True] * len(ONE_PERSON)
    assert report["model"]["test_model"] and any("tiny random test model" in note for note in report["notes"])
    sheet = (tmp_path / "index.html").read_text()
    assert all(image["download"] in sheet for image in report["images"])
    assert "headshot.png: ai_verified" in output
    assert '"status":"succeeded","stage":"score","attempt":1' in output.replace(" ", "")
