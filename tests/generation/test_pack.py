"""Identity training, presets, rendering and the whole pack, on the tiny random SDXL (CPU, or CUDA in bf16)."""

import html
import io
import json

import c2pa
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file
from typer.testing import CliRunner

from generation.kohya import KOHYA_FILE
from generation.lora_files import LORA_FILE, use_saved_lora
from generation.models import load_model
from generation.pack import (
    TINY_MODEL_NOTE,
    PackSettings,
    Provenance,
    ReferenceInput,
    accept_references,
    make_pack,
)
from generation.presets import PresetError, load_presets, select_presets
from generation.render import render
from generation.training import TrainingConfig, TrainingStopped, train_identity_lora
from provenance import ImageLimits, verify_image
from provenance.registry import InMemoryRegistry
from scoring.faces import DlibBackend
from service.cli import app
from tests.conftest import FACES, signed_capture

PHOTOS = ["img1.jpg", "img2.jpg", "img4.jpg", "img5.jpg", "img6.jpg"]  # one person
FAST = TrainingConfig(steps=8, rank=4, alpha=8, learning_rate=1e-3, resolution=64, seed=3, checkpoint_every=4)


def _photos() -> list[Image.Image]:
    return [Image.open(FACES / name).convert("RGB") for name in PHOTOS]


@pytest.fixture
def model(tiny_model):
    return load_model(tiny_model)


@pytest.fixture(scope="module")
def provenance(store):
    return Provenance(store.signing_identity(), InMemoryRegistry(), store.trust_anchors(), ImageLimits())


def test_training_resumes_to_the_same_lora(model, tiny_model, tmp_path):
    straight = train_identity_lora(model.pipeline, _photos(), tmp_path / "straight", FAST)
    assert straight.steps_done == 8 and len(straight.losses) == 8

    def stop_at_five(progress):
        if progress.step == 5:
            raise TrainingStopped

    interrupted = train_identity_lora(
        load_model(tiny_model).pipeline, _photos(), tmp_path / "resumed", FAST, stop_at_five
    )
    assert interrupted.lora_path is None and interrupted.steps_done == 5
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-000004", "step-000005"]
    resumed = train_identity_lora(load_model(tiny_model).pipeline, _photos(), tmp_path / "resumed", FAST)
    assert resumed.resumed_from == 5
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    first, second = load_file(straight.lora_path), load_file(resumed.lora_path)
    assert first.keys() == second.keys() and len(first) > 0
    for key in first:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-4, atol=1e-6)


def test_lora_round_trip_in_a_fresh_pipeline(model, tiny_model, tmp_path):
    config = TrainingConfig(steps=30, rank=4, alpha=8, learning_rate=1e-2, resolution=64, checkpoint_every=30)
    result = train_identity_lora(model.pipeline, _photos(), tmp_path / "lora", config)
    assert result.lora_path.name == LORA_FILE and len(result.lora_sha256) == 64
    trained = _image(model.pipeline)

    fresh = load_model(tiny_model).pipeline
    without = _image(fresh)
    use_saved_lora(fresh, tmp_path / "lora")
    with_lora = _image(fresh)
    assert np.abs(with_lora - without).max() > 1.0  # the LoRA changes the output ...
    np.testing.assert_allclose(with_lora, trained, atol=2.0)  # ... exactly as trained: alpha/rank kept
    metadata = json.loads(
        __import__("safetensors").safe_open(result.lora_path, "np").metadata()["lora_adapter_metadata"]
    )
    assert metadata["unet.r"] == 4 and metadata["unet.lora_alpha"] == 8


def _image(pipeline) -> np.ndarray:
    presets = select_presets(load_presets(), ["corporate-grey"])
    return np.asarray(render(pipeline, presets, "hsk person", 1, seed=5, steps=2, size=64)[0].pixels, dtype=np.float32)


def test_presets(tmp_path):
    presets = load_presets()
    assert {"corporate-grey", "outdoor-natural", "modern-office", "black-white-studio", "casual-creative"} <= set(
        presets
    )
    assert "hsk person" in presets["corporate-grey"].render("hsk person")
    own = tmp_path / "mine.toml"
    own.write_text('[corporate-grey]\nprompt = "my grey {subject}"\n\n[linkedin-blue]\nprompt = "blue {subject}"\n')
    merged = load_presets(own)
    assert merged["corporate-grey"].prompt == "my grey {subject}"
    assert merged["linkedin-blue"].render("x") == "blue x"
    assert [p.name for p in select_presets(merged, ["linkedin-blue"])] == ["linkedin-blue"]
    with pytest.raises(PresetError, match="unknown style nope; available:"):
        select_presets(merged, ["nope"])
    own.write_text('[broken]\nprompt = "no subject here"\n')
    with pytest.raises(PresetError, match=r"must contain \{subject\}"):
        load_presets(own)
    own.write_text("not toml [")
    with pytest.raises(PresetError, match="not valid TOML"):
        load_presets(own)


def test_rendering_is_deterministic(model):
    presets = select_presets(load_presets(), ["corporate-grey", "outdoor-natural"])
    first = render(model.pipeline, presets, "hsk person", 2, seed=9, steps=2, size=64, batch_size=3)
    second = render(model.pipeline, presets, "hsk person", 2, seed=9, steps=2, size=64, batch_size=1)
    assert [(image.style, image.seed) for image in first] == [
        ("corporate-grey", 9),
        ("corporate-grey", 10),
        ("outdoor-natural", 1009),
        ("outdoor-natural", 1010),
    ]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_allclose(np.asarray(a.pixels, float), np.asarray(b.pixels, float), atol=2)
        assert a.parameters["seed"] == a.seed and a.parameters["inference_steps"] == 2
    assert np.abs(np.asarray(first[0].pixels, float) - np.asarray(first[1].pixels, float)).max() > 10


def _photo_forbidding_training(store) -> bytes:
    """A camera photo whose own Content Credentials say: not for AI training."""
    forbid = {"label": "c2pa.training-mining", "data": {"entries": {"c2pa.ai_training": {"use": "notAllowed"}}}}
    return signed_capture(store, (FACES / "img7.jpg").read_bytes(), forbid)


def test_do_not_train_photos_are_refused_unless_licensed(store, provenance):
    protected = _photo_forbidding_training(store)
    references = [
        ReferenceInput("mine.jpg", (FACES / "img1.jpg").read_bytes()),
        ReferenceInput("theirs.jpg", protected),
    ]
    _, decisions, accepted = accept_references(references, provenance, DlibBackend())
    by_name = {decision["name"]: decision for decision in decisions}
    assert not by_name["theirs.jpg"]["accepted"]
    assert "forbid AI training (c2pa.ai_training)" in by_name["theirs.jpg"]["reason"]
    assert "--licensed" in by_name["theirs.jpg"]["reason"]
    assert [reference.name for reference, _ in accepted] == ["mine.jpg"]

    licensed = [
        references[0],
        ReferenceInput("theirs.jpg", protected, licence_note="licence #42 from the photographer"),
    ]
    _, decisions, accepted = accept_references(licensed, provenance, DlibBackend())
    theirs = next(decision for decision in decisions if decision["name"] == "theirs.jpg")
    assert theirs["accepted"] and theirs["licence_note"] == "licence #42 from the photographer"
    assert theirs["sha256"] and "training_permission" in theirs  # all of this goes into training.json
    assert "used under a recorded licence" in theirs["training_permission"]
    assert len(accepted) == 2


def test_pack_end_to_end(model, provenance, tmp_path):
    references = [ReferenceInput(name, (FACES / name).read_bytes()) for name in PHOTOS]
    references.append(ReferenceInput("group.jpg", (FACES / "couple.jpg").read_bytes()))
    settings = PackSettings(
        select_presets(load_presets(), ["corporate-grey", "black-white-studio"]),
        count=2,
        inference_steps=2,
        size=64,
        seed=1,
        top_k=3,
        training=TrainingConfig(steps=6, rank=4, alpha=4, resolution=64, checkpoint_every=3),
    )
    steps, events = [], []

    def on_training(progress):
        steps.append(progress)
        events.append("training")

    report = make_pack(
        model,
        references,
        tmp_path / "pack",
        settings,
        provenance,
        DlibBackend(),
        on_training=on_training,
        on_image=lambda done, total: events.append(f"image {done}/{total}"),
        on_references=lambda decisions: events.append(f"{len(decisions)} references"),
    )
    assert [p.step for p in steps] == [1, 2, 3, 4, 5, 6] and all(p.eta_seconds >= 0 for p in steps)
    # the reference decisions come before any training (a bad photo stops the user early), rendering after
    assert events == [f"{len(references)} references", *["training"] * 6, "image 0/4", "image 4/4"]
    saved = json.loads((tmp_path / "pack" / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    decisions = {decision["name"]: decision for decision in report["references"]}
    assert not decisions["group.jpg"]["accepted"] and decisions["group.jpg"]["reason"].startswith("2 faces")
    assert report["lora"]["sha256"] and report["model"]["sha256"] == model.sha256
    assert len(report["training"]["loss"]) == 6
    # validation renders at each checkpoint, scored by likeness: the tiny model renders noise, in which dlib
    # finds no face, so every checkpoint scores 0 and the last one is kept
    assert [c["step"] for c in report["training"]["checkpoints"]] == [3, 6]
    assert all(c["images"] == 4 and c["faces"] == 0 and c["likeness"] == 0 for c in report["training"]["checkpoints"])
    assert report["training"]["chosen_checkpoint"]["step"] == 6
    assert "no validation render showed the person" in report["training"]["chosen_checkpoint"]["reason"]
    record = json.loads((tmp_path / "pack" / "lora" / "training.json").read_text())
    assert record["chosen_checkpoint"] == report["training"]["chosen_checkpoint"]
    assert [photo["name"] for photo in record["photos"]] == PHOTOS and all(p["used"] for p in record["photos"])
    assert len(report["images"]) == 4 and len(report["top_k"]) == 3
    reference_hashes = sorted(decisions[name]["sha256"] for name in PHOTOS)

    for image in report["images"]:
        assert {"file", "style", "seed", "parameters", "score", "checks", "label", "kept"} <= set(image)
        data = (tmp_path / "pack" / image["file"]).read_bytes()
        verdict = verify_image(data, provenance.trust)
        assert verdict.label == image["label"] == "ai_verified"
        assert sorted(i["sha256"] for i in verdict.c2pa.ingredients) == reference_hashes
        with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
            actions = next(a for a in reader.get_active_manifest()["assertions"] if a["label"] == "c2pa.actions.v2")
        hashes = actions["data"]["actions"][0]["parameters"]["model_hashes"]
        assert hashes == {"sdxl-base": model.sha256, "identity-lora": report["lora"]["sha256"]}
    sheet = (tmp_path / "pack" / "index.html").read_text()
    assert all(image["file"] in sheet for image in report["images"]) and "Hands were checked for anatomy" in sheet
    assert not any(path.suffix == ".png" for path in (tmp_path / "pack").iterdir())  # images only under images/
    # the contact sheet states what report.json records: 64 px images carry no watermark, and the model is a toy
    assert not any(image["watermarked"] for image in report["images"])
    assert "carries Content Credentials that say so, no invisible watermark (images under 128 px" in sheet
    assert "an invisible watermark," not in sheet
    assert sheet.count("invisible watermark: none (images under 128 px") == 4
    assert report["model"]["test_model"] and TINY_MODEL_NOTE in report["notes"] and TINY_MODEL_NOTE in sheet
    assert "accepted (accepted)" not in sheet and "<li>img1.jpg: accepted</li>" in sheet
    assert "<li>group.jpg: rejected (2 faces" in sheet
    for image in report["images"]:  # each card says why the image is kept or not, as report.json does
        assert image["kept_reason"].startswith("yes" if image["kept"] else "no")
        assert f"kept: {html.escape(image['kept_reason'])}" in sheet
    parameters = [image["parameters"] for image in report["images"]]
    assert all(p["inference_steps"] == 2 and p["size"] == 64 for p in parameters)  # the API's names


def test_pack_needs_a_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HEADSHOT_SDXL_MODEL", raising=False)
    result = CliRunner().invoke(app, ["pack", "--reference", str(FACES / "img1.jpg"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "no SDXL model configured" in result.output
    result = CliRunner().invoke(
        app, ["pack", "--model", str(tmp_path / "nowhere"), "--reference", str(FACES / "img1.jpg"), "--out", "o"]
    )
    assert result.exit_code == 1 and "nowhere" in result.output


def test_tiny_model_command(tmp_path):
    result = CliRunner().invoke(app, ["models", "tiny", str(tmp_path / "tiny")])
    assert result.exit_code == 0 and "they produce noise, not faces" in " ".join(result.output.split())
    assert "noise" in (tmp_path / "tiny" / "README.md").read_text()
    assert "random" in (tmp_path / "tiny" / "ip-adapter-faceid" / "README.md").read_text()


def test_train_then_generate_commands(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    references = [arg for name in PHOTOS[:3] for arg in ("--reference", str(FACES / name))]
    trained = CliRunner().invoke(
        app,
        [
            "train",
            "--model",
            str(tiny_model),
            "--out",
            str(tmp_path / "lora"),
            "--steps",
            "4",
            "--rank",
            "4",
            "--resolution",
            "64",
            "--class-word",
            "woman",
            "--batch-size",
            "3",
            "--export",
            "kohya",
            "--learning-rate",
            "0.0002",
            *references,
        ],
    )
    assert trained.exit_code == 0, trained.output
    # without a terminal: the reference decisions, then one line per training step
    lines = trained.output.splitlines()
    decisions = [i for i, line in enumerate(lines) if f"reference {FACES}/" in line]  # stderr shares the output
    training = [line for line in lines if line.startswith("training step ")]
    assert lines[decisions[0]].endswith(f"reference {FACES / PHOTOS[0]}: accepted")
    assert "(accepted)" not in trained.output
    assert len(decisions) == 3 and max(decisions) < lines.index(training[0])
    assert [line.split(" (")[0] for line in training] == [f"training step {i}/4" for i in (1, 2, 3, 4)]
    assert "left" in training[0] and "loss " in training[-1] and "left" not in training[-1]
    assert "LoRA" in trained.output and (tmp_path / "lora" / LORA_FILE).exists()
    assert "checkpoint of step 4 kept" in trained.output
    kohya = tmp_path / "lora" / KOHYA_FILE
    assert f"kohya LoRA {kohya}" in trained.output and kohya.exists()
    record = json.loads((tmp_path / "lora" / "training.json").read_text())
    assert [r["accepted"] for r in record["references"]] == [True, True, True]
    assert len(record["base_model"]["sha256"]) == 64 and len(record["losses"]) == 4
    assert record["config"]["class_word"] == "woman" and record["config"]["batch_size"] == 3
    assert record["config"]["learning_rate"] == 0.0002
    generated = CliRunner().invoke(
        app,
        [
            "generate",
            "--model",
            str(tiny_model),
            "--lora",
            str(tmp_path / "lora"),
            "--out",
            str(tmp_path / "out"),
            "--styles",
            "modern-office",
            "--count",
            "5",
            "--inference-steps",
            "2",
            "--size",
            "64",
            "--top-k",
            "1",
            *references,
        ],
    )
    assert generated.exit_code == 0, generated.output
    rendered = [line for line in generated.output.splitlines() if line.startswith("rendering image ")]
    assert [line.split(" (")[0] for line in rendered] == [f"rendering image {i}/5" for i in (0, 4, 5)]
    assert rendered[1].endswith(" left") and "about " in rendered[1]  # batches of 4: an ETA after the first
    assert f"note: {TINY_MODEL_NOTE}" in generated.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [image["style"] for image in report["images"]] == ["modern-office"] * 5
    assert all("hsk woman" in image["parameters"]["prompt"] for image in report["images"])  # as trained
    assert len(report["top_k"]) == 1
    assert all(image["label"] == "ai_verified" for image in report["images"])
    missing = CliRunner().invoke(
        app,
        ["generate", "--model", str(tiny_model), "--lora", str(tmp_path), "--out", str(tmp_path / "x"), *references],
    )
    assert missing.exit_code == 1 and "headshot train" in missing.output
