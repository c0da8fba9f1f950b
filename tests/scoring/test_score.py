import csv
import json
import shutil

import pytest
from PIL import Image, ImageEnhance, ImageFilter
from typer.testing import CliRunner

from scoring.faces import DlibBackend
from scoring.likeness import band_for, confidence_for
from scoring.score import ScoringError, build_identity, score_candidate, select_top
from service.cli import app
from tests.conftest import FACES, encode

BACKEND = DlibBackend()
PERSON = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg"]  # one person (master.csv)


def _open(name: str) -> Image.Image:
    with Image.open(FACES / name) as image:
        return image.convert("RGB")


@pytest.fixture(scope="module")
def identity():
    return build_identity([(name, _open(name)) for name in PERSON], BACKEND)


def test_confidence_is_anchored_on_the_operating_point():
    assert confidence_for(0.6, BACKEND) == pytest.approx(0.5)
    assert confidence_for(0.4, BACKEND) > 0.98
    assert confidence_for(0.8, BACKEND) < 0.02
    assert [band_for(confidence_for(d, BACKEND)) for d in (0.45, 0.6, 0.75)] == ["same", "uncertain", "different"]


def test_reference_photos_are_accepted_or_rejected_with_reasons():
    photos = [
        ("a", _open("img1.jpg")),
        ("b", _open("img2.jpg")),
        ("copy of a", _open("img1.jpg").resize((900, 1216))),
        ("two people", _open("couple.jpg")),
        ("no face", Image.new("RGB", (400, 400), "grey")),
        ("tiny", _open("img4.jpg").resize((100, 69))),
        ("blurred", _open("img5.jpg").filter(ImageFilter.GaussianBlur(8))),
    ]
    identity = build_identity(photos, BACKEND)
    reasons = {reference.name: reference.reason for reference in identity.references}
    assert reasons["a"] == reasons["b"] == "accepted"
    assert reasons["copy of a"] == "near-duplicate of a"
    assert reasons["two people"].startswith("2 faces")
    assert reasons["no face"] == "no face found"
    assert reasons["tiny"].startswith("face too small") or reasons["tiny"] == "no face found"
    assert reasons["blurred"].startswith("face too blurred")
    assert len(identity.accepted) == 2
    assert identity.spread > 0
    with pytest.raises(ScoringError, match="no usable reference photo"):
        build_identity([("no face", Image.new("RGB", (300, 300)))], BACKEND)


def test_likeness_bands_on_real_pairs(identity):
    same = score_candidate("img6.jpg", _open("img6.jpg"), identity, BACKEND)
    other = score_candidate("img20.jpg", _open("img20.jpg"), identity, BACKEND)
    assert same.likeness.band == "same" and same.passed
    assert other.likeness.band == "different" and not other.passed
    assert same.score > other.score
    assert same.likeness.near_copy_of is None


def test_master_csv_pairs_are_separable():
    """A sanity check, not a benchmark: this small, easy set of 300 pairs (docs/SCORING.md has the figures)."""
    embeddings = {}

    def embedding(name):
        if name not in embeddings:
            image = _open(name)
            embeddings[name] = BACKEND.embed(image, BACKEND.detect(image)[0])
        return embeddings[name]

    rows = list(csv.DictReader((FACES / "master.csv").open()))
    same, different = [], []
    for row in rows:
        distance = float(((embedding(row["file_x"]) - embedding(row["file_y"])) ** 2).sum() ** 0.5)
        (same if row["Decision"] == "Yes" else different).append(distance)
    assert max(same) < min(different)  # some threshold separates all pairs
    correct = sum(d < BACKEND.same_person_distance for d in same) + sum(d >= 0.6 for d in different)
    assert correct / len(rows) >= 0.98  # and the published operating point nearly does


def test_near_copy_of_a_reference_is_flagged(identity):
    copy = ImageEnhance.Brightness(_open("img2.jpg")).enhance(1.05).resize((1000, 750))
    report = score_candidate("copy", copy, identity, BACKEND)
    assert report.likeness.near_copy_of == "img2.jpg"
    assert not report.passed
    mirrored = score_candidate("mirror", copy.transpose(Image.Transpose.FLIP_LEFT_RIGHT), identity, BACKEND)
    assert mirrored.likeness.near_copy_of == "img2.jpg"
    fresh = score_candidate("img7.jpg", _open("img7.jpg"), identity, BACKEND)
    assert fresh.likeness.near_copy_of is None


def test_ranking_removes_duplicates_prefers_variety_and_fills_up(identity):
    reports = [
        score_candidate("studio-1", _open("img6.jpg"), identity, BACKEND, style="studio"),
        score_candidate("studio-1-again", _open("img6.jpg").resize((700, 980)), identity, BACKEND, style="studio"),
        score_candidate("studio-2", _open("img7.jpg"), identity, BACKEND, style="studio"),
        score_candidate("outdoor-1", _open("img10.jpg"), identity, BACKEND, style="outdoor"),
        score_candidate("stranger", _open("img20.jpg"), identity, BACKEND, style="office"),
        score_candidate("blurred", _open("img11.jpg").filter(ImageFilter.GaussianBlur(8)), identity, BACKEND, "bw"),
    ]
    ranked = select_top(reports, top_k=2)
    assert [report.rank for report in ranked] == [1, 2, 3, 4, 5, 6]
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    by_name = {report.file: report for report in ranked}
    assert by_name["studio-1-again"].duplicate_of == "studio-1" or by_name["studio-1"].duplicate_of == "studio-1-again"
    kept = [report.file for report in ranked if report.kept]
    assert len(kept) == 2 and all(by_name[name].passed for name in kept)
    assert "outdoor-1" in kept  # variety: one studio and the outdoor one, not two studio shots

    everything = select_top(reports, top_k=5)
    kept = [report for report in everything if report.kept]
    assert len(kept) == 5
    assert {report.file for report in kept if not report.passed} == {"stranger", "blurred"}
    assert all(report.duplicate_of is None for report in kept)


def test_score_command(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEADSHOT_MAX_PIXELS", "5000000")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes((FACES / "img6.jpg").read_bytes()[:3000])
    huge = tmp_path / "huge.png"
    huge.write_bytes(encode(Image.new("RGB", (2500, 2500)), "PNG"))
    blank = tmp_path / "blank.png"
    blank.write_bytes(encode(Image.new("RGB", (300, 300), "grey"), "PNG"))
    args = ["score", "--json", "--top-k", "2", "--workers", "1"]
    for name in PERSON[:3]:
        args += ["--reference", str(FACES / name)]
    args += ["--reference", str(FACES / "couple.jpg")]
    args += [str(FACES / "img6.jpg"), str(FACES / "img20.jpg"), str(blank), str(corrupt), str(huge)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1  # some candidates could not be read; the others are scored
    reports = json.loads(result.stdout)
    by_file = {report["file"]: report for report in reports}
    first = by_file[str(FACES / "img6.jpg")]
    # the shape every report had before hands were checked, plus two additions: "hands" and "kept_reason"
    assert set(first) == {
        "file",
        "likeness",
        "checks",
        "score",
        "rank",
        "kept",
        "passed",
        "duplicate_of",
        "notes",
        "hands",
        "kept_reason",
    }
    assert first["kept_reason"] == "yes" if first["passed"] else first["kept_reason"].startswith("yes, to fill up")
    assert first["hands"] == [] and all(
        set(check) == {"name", "value", "threshold", "passed", "explanation"} for check in first["checks"]
    )
    assert first["likeness"]["band"] == "same" and first["rank"] == 1 and first["kept"]
    assert [c["name"] for c in first["checks"]] == [
        "one_face",
        "framing",
        "sharpness",
        "exposure",
        "eye_highlights",
        "geometry",
        "pose",
        "hands",
    ]
    assert by_file[str(blank)]["likeness"] is None
    assert by_file[str(blank)]["checks"][0]["explanation"] == "No face was found."
    assert [check["name"] for check in by_file[str(blank)]["checks"]] == ["one_face", "hands"]
    assert not any("not checked" in note for report in reports if "notes" in report for note in report["notes"])
    assert "corrupt or truncated" in by_file[str(corrupt)]["error"]
    assert "over the limit of 5,000,000 pixels" in by_file[str(huge)]["error"]
    assert "couple.jpg rejected: 2 faces" in result.stderr


@pytest.mark.parametrize("width", [80, 140])
def test_score_table_keeps_names_apart(tmp_path, monkeypatch, width):
    """Without a terminal (80 columns) or on a wide one, long names that share a folder and a prefix stay
    distinguishable, and `kept` says why."""
    from service.cli.common import console

    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(console, "_width", width)
    folder = tmp_path / "a-studio-export-folder-with-a-long-name" / "candidates-for-the-client"
    folder.mkdir(parents=True)
    names = []
    for number, source in enumerate(["img6.jpg", "img20.jpg", "img6.jpg"], start=1):
        name = f"headshot-candidate-corporate-grey-render-{number:04d}.jpg"
        shutil.copy(FACES / source, folder / name)
        names.append(name)
    args = ["score", "--top-k", "1", "--workers", "1", *(str(folder / name) for name in names)]
    for name in PERSON[:3]:
        args += ["--reference", str(FACES / name)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"candidates in {folder}/" in result.output
    lines = result.output.splitlines()
    if width == 80:  # a list: each name whole on its own line
        assert all(any(line.endswith(f". {name}") for line in lines) for name in names)
    else:  # a table within the width, whose file cells, perhaps wrapped, hold the whole names
        rows = [line.split("│")[1:-1] for line in lines if line.startswith("│")]
        assert rows and all(len(line) <= width for line in lines if line.startswith("│"))
        files = []
        for cells in rows:
            if cells[0].strip():
                files.append("")
            files[-1] += cells[1].strip()
        assert sorted(files) == names
    reports = {r["file"]: r for r in json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)}
    if width == 80:  # the list layout: every reason in full
        for report in reports.values():
            assert f"kept: {report['kept_reason'].replace(f'{folder}/', '')}" in result.output
    duplicate = reports[str(folder / names[2])]
    assert not duplicate["kept"] and duplicate["kept_reason"] == f"no: near-duplicate of {folder / names[0]}"
