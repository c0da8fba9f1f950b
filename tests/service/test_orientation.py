"""Phone photos stored sideways (EXIF Orientation 6, 8 or 3) through the CLI and the upload API: accepted
as references and scored upright; their identity stays the hash of the bytes as given."""

import hashlib
import json

from typer.testing import CliRunner

from service.cli import app
from tests.conftest import FACES, sideways
from tests.service.test_app import CONSENT, _upload, auth, client, keys, settings  # noqa: F401 (fixtures)


def _write(tmp_path, name: str, orientation: int):
    path = tmp_path / f"{name.removesuffix('.jpg')}-orientation-{orientation}.jpg"
    path.write_bytes(sideways(name, orientation))
    return path


def test_score_reads_sideways_photos_upright(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    references = [_write(tmp_path, "img1.jpg", 6), _write(tmp_path, "img2.jpg", 8), _write(tmp_path, "img4.jpg", 3)]
    candidate = _write(tmp_path, "img6.jpg", 6)
    args = ["score", "--json", "--workers", "1", *(arg for path in references for arg in ("--reference", path))]
    result = CliRunner().invoke(app, [str(arg) for arg in [*args, candidate, FACES / "img6.jpg"]])
    assert result.exit_code == 0, result.output
    assert "rejected" not in result.stderr  # every sideways reference was accepted
    reports = {report["file"]: report for report in json.loads(result.stdout)}
    turned, upright = reports[str(candidate)], reports[str(FACES / "img6.jpg")]
    assert turned["likeness"]["band"] == "same"
    # the same face as the upright copy, up to the JPEG re-encode
    assert abs(turned["likeness"]["distance"] - upright["likeness"]["distance"]) < 0.03
    assert [check["passed"] for check in turned["checks"]] == [check["passed"] for check in upright["checks"]]


def test_train_accepts_sideways_references(tmp_path, monkeypatch, tiny_model):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    references = [_write(tmp_path, "img1.jpg", 6), _write(tmp_path, "img2.jpg", 8), _write(tmp_path, "img4.jpg", 3)]
    args = ["train", "--model", tiny_model, "--out", tmp_path / "lora", "--steps", "2", "--resolution", "64"]
    args += [arg for path in references for arg in ("--reference", path)]
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    for path in references:
        assert f"reference {path}: accepted\n" in result.output
    record = json.loads((tmp_path / "lora" / "training.json").read_text())
    assert [reference["sha256"] for reference in record["references"]] == [
        hashlib.sha256(path.read_bytes()).hexdigest() for path in references
    ]
    upright_sizes = {"img1": [1382, 1868], "img2": [1536, 1152], "img4": [2500, 1728]}
    for photo, path in zip(record["photos"], references, strict=True):
        assert photo["used"] and photo["size"] == upright_sizes[path.name.split("-")[0]]


def test_upload_reads_sideways_photos_upright(client, keys, settings):  # noqa: F811 (fixtures)
    studio = auth(keys["studio"])
    subject_id = client.post("/v1/subjects", json={"display_name": "S", "consent": CONSENT}, headers=studio).json()[
        "id"
    ]
    turned = sideways("img1.jpg", 6)
    uploaded = _upload(client, keys["studio"], subject_id, "phone.jpg", turned)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["accepted"] and uploaded.json()["sha256"] == hashlib.sha256(turned).hexdigest()
    # the stored sideways photo is read upright when the next upload is checked against it: the same picture
    # upright (other bytes) is a near-duplicate of it
    again = _upload(client, keys["studio"], subject_id, "img1.jpg").json()
    assert not again["accepted"] and again["reason"] == f"near-duplicate of {uploaded.json()['id']}"
    other = _upload(client, keys["studio"], subject_id, "other.jpg", sideways("img2.jpg", 8)).json()
    assert other["accepted"], other["reason"]
    # the auditor's training lookup finds the sideways upload from an upright copy
    lookup = client.post(
        "/v1/audit/training-lookup",
        files={"file": ("copy.jpg", (FACES / "img1.jpg").read_bytes(), "image/jpeg")},
        headers=auth(keys["auditor"]),
    ).json()
    assert lookup["used_for_training"]
    assert any(match["photo_sha256"] == uploaded.json()["sha256"] for match in lookup["matches"])
