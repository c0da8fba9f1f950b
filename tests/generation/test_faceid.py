"""Zero-shot identity: IP-Adapter FaceID (faceid) and LoRA + adapter (hybrid) on the tiny models, on CPU."""

import io
import json
import shutil

import c2pa
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from generation.faceid import (
    FaceAdapter,
    FaceEmbedding,
    IdentityError,
    IdentityMethod,
    adapter_weights,
    encoder_record,
    face_embedding,
    face_encoder,
)
from generation.lora_files import LORA_FILE
from generation.models import load_model
from generation.pack import PackError, PackSettings, Provenance, ReferenceInput, make_pack
from generation.presets import load_presets, select_presets
from generation.render import render
from generation.tiny_faceid import WEIGHTS_FILE
from generation.training import TrainingConfig
from provenance import ImageLimits, verify_image
from provenance.registry import InMemoryRegistry
from service.cli import app
from tests.conftest import FACES

PHOTOS = ["img1.jpg", "img2.jpg", "img4.jpg"]  # one person
QUICK_TRAINING = TrainingConfig(
    steps=2, rank=4, alpha=4, resolution=64, checkpoint_every=2, validation_images=1, validation_steps=2
)


@pytest.fixture(scope="module")
def provenance(store):
    return Provenance(store.signing_identity(), InMemoryRegistry(), store.trust_anchors(), ImageLimits())


@pytest.fixture(scope="module")
def encoder(tiny_insightface_pack):
    return face_encoder(tiny_insightface_pack)


def _photos(names=PHOTOS) -> list[tuple[str, Image.Image]]:
    return [(name, Image.open(FACES / name).convert("RGB")) for name in names]


def _settings(method: IdentityMethod, styles=("corporate-grey",), count=2) -> PackSettings:
    return PackSettings(
        select_presets(load_presets(), list(styles)),
        count=count,
        inference_steps=2,
        size=64,
        seed=4,
        top_k=2,
        training=QUICK_TRAINING,
        identity=method,
    )


def _created_action(data: bytes) -> dict:
    with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
        actions = next(a for a in reader.get_active_manifest()["assertions"] if a["label"] == "c2pa.actions.v2")
    return actions["data"]["actions"][0]


def test_face_embedding_is_the_normalised_mean_of_the_photos(encoder):
    photos = _photos()
    embedding = face_embedding([*photos, ("dark.png", Image.new("RGB", (640, 640)))], encoder)
    singles = []
    for _, image in photos:
        vector = encoder.embed(image, encoder.detect(image)[0])
        singles.append(vector / np.linalg.norm(vector))
    mean = np.mean(singles, axis=0)
    np.testing.assert_allclose(embedding.vector, mean / np.linalg.norm(mean), atol=1e-5)
    assert embedding.vector.shape == (512,) and np.linalg.norm(embedding.vector) == pytest.approx(1, abs=1e-5)
    assert embedding.photos == PHOTOS
    assert embedding.skipped == [{"name": "dark.png", "reason": "insightface found no face"}]
    assert embedding.spread == pytest.approx(np.mean([1 - v @ embedding.vector for v in singles]), abs=1e-4)
    with pytest.raises(IdentityError, match=r"no face embedding could be made .*dark\.png: insightface found no face"):
        face_embedding([("dark.png", Image.new("RGB", (640, 640)))], encoder)


def test_the_tiny_adapter_loads_through_diffusers_and_conditions_on_the_embedding(
    tiny_model, tiny_faceid, tiny_insightface_pack, encoder
):
    model = load_model(tiny_model)
    presets = select_presets(load_presets(), ["corporate-grey"])
    method = IdentityMethod("faceid", tiny_faceid, tiny_insightface_pack)
    one = FaceEmbedding(np.eye(512, dtype=np.float32)[0], ["a"])
    other = FaceEmbedding(np.eye(512, dtype=np.float32)[1], ["b"])
    adapters = [FaceAdapter(method, embedding, encoder_record(encoder)) for embedding in (one, other)]
    adapters[0].attach(model.pipeline)
    assert type(model.pipeline.unet.encoder_hid_proj.image_projection_layers[0]).__name__ == (
        "IPAdapterFaceIDImageProjection"
    )
    assert model.pipeline.get_active_adapters() == ["faceid_0"]  # the LoRA that FaceID checkpoints carry

    def image(adapter) -> np.ndarray:
        rendered = render(
            model.pipeline,
            presets,
            "a person",
            2,
            seed=3,
            steps=2,
            size=64,
            conditioning=lambda batch, guidance: adapter.inputs(model.pipeline, batch, guidance),
        )
        return np.stack([np.asarray(item.pixels, dtype=np.float32) for item in rendered])

    first, second = image(adapters[0]), image(adapters[1])
    assert np.abs(first - second).max() > 10  # the face embedding steers the images
    np.testing.assert_allclose(image(adapters[0]), first, atol=1)  # and reproducibly
    model.pipeline.set_ip_adapter_scale(0.0)
    np.testing.assert_allclose(image(adapters[0]), image(adapters[1]), atol=1)  # scale 0: no effect at all


def test_missing_or_wrong_adapter_files_are_clear_errors(tmp_path, tiny_model, tiny_faceid, tiny_insightface_pack):
    with pytest.raises(IdentityError) as missing:
        IdentityMethod("faceid").check()
    assert "--ip-adapter PATH or set HEADSHOT_IP_ADAPTER" in str(missing.value)
    assert "HEADSHOT_INSIGHTFACE_PACK" in str(missing.value) and "research" in str(missing.value)
    IdentityMethod("lora").check()  # the LoRA method needs neither
    with pytest.raises(IdentityError, match="unknown identity method 'instantid': use lora, faceid, hybrid"):
        IdentityMethod("instantid")
    with pytest.raises(IdentityError, match=r"HEADSHOT_INSIGHTFACE_PACK .*nowhere is not a folder"):
        IdentityMethod("hybrid", tiny_faceid, tmp_path / "nowhere").check()

    assert adapter_weights(tiny_faceid) == adapter_weights(tiny_faceid / WEIGHTS_FILE) == tiny_faceid / WEIGHTS_FILE
    crowded = tmp_path / "crowded"
    shutil.copytree(tiny_faceid, crowded)
    (crowded / "ip-adapter-faceid_sd15.bin").write_bytes(b"")
    with pytest.raises(IdentityError, match=r"exactly one .* found ip-adapter-faceid_sd15\.bin, ip-adapter-faceid_"):
        adapter_weights(crowded)
    with pytest.raises(IdentityError, match=r"not IP-Adapter weights: expected a \.bin or \.safetensors"):
        adapter_weights(tiny_faceid / "README.md")

    # weights for another UNet (here: a cross-attention width the tiny SDXL does not have) are refused by name
    state = load_file(tiny_faceid / WEIGHTS_FILE)
    state = {key: value[:, :16].contiguous() if key.endswith("_ip.weight") else value for key, value in state.items()}
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    save_file(state, wrong / "ip-adapter-faceid_sd15.safetensors")
    method = IdentityMethod("faceid", wrong, tiny_insightface_pack)
    adapter = FaceAdapter(method, FaceEmbedding(np.eye(512, dtype=np.float32)[0], ["a"]), {})
    pipeline = load_model(tiny_model).pipeline
    with pytest.raises(IdentityError, match=r"faceid_sd15\.safetensors is not an IP-Adapter FaceID for this SDXL"):
        adapter.attach(pipeline)

    # a plain IP-Adapter (CLIP image features in) loads in diffusers, but is not FaceID
    width = pipeline.unet.config.cross_attention_dim
    plain = {key: value for key, value in load_file(tiny_faceid / WEIGHTS_FILE).items() if "_ip." in key}
    plain |= {
        "image_proj.proj.weight": torch.zeros(4 * width, 64),
        "image_proj.proj.bias": torch.zeros(4 * width),
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    other = tmp_path / "other"
    other.mkdir()
    save_file(plain, other / "ip-adapter_sdxl.safetensors")
    adapter = FaceAdapter(IdentityMethod("faceid", other, tiny_insightface_pack), adapter.embedding, {})
    with pytest.raises(IdentityError, match=r"an IP-Adapter of another kind \(ImageProjection"):
        adapter.attach(pipeline)
    # an encoder whose embeddings have another size than the adapter takes
    small = FaceEmbedding(np.eye(256, dtype=np.float32)[0], ["a"])
    adapter = FaceAdapter(IdentityMethod("faceid", tiny_faceid, tiny_insightface_pack), small, {})
    with pytest.raises(IdentityError, match=r"takes 512-number face embeddings, but .* gives 256"):
        adapter.attach(pipeline)


def test_faceid_pack_without_training(tiny_model, tiny_faceid, tiny_insightface_pack, encoder, provenance, tmp_path):
    """No LoRA is trained; the manifest names the method and every model part; likeness is scored by dlib
    although the configured backend is insightface, because insightface's ArcFace conditioned the images."""
    model = load_model(tiny_model)
    references = [ReferenceInput(name, (FACES / name).read_bytes()) for name in PHOTOS]
    method = IdentityMethod("faceid", tiny_faceid, tiny_insightface_pack)
    report = make_pack(model, references, tmp_path / "pack", _settings(method), provenance, encoder)

    assert not (tmp_path / "pack" / "lora").exists() and report["lora"] is None and report["method"] == "faceid"
    assert report["identity"]["backend"] == "dlib"
    assert report["likeness"]["encoder"] == "dlib"
    assert report["likeness"]["conditioning_encoder"] == "insightface ArcFace"
    adapter = report["adapter"]
    assert adapter["scale"] == 1.0  # the photos are named as the manifest's ingredients are
    assert adapter["embedding"]["photos"] == ["reference photo 1", "reference photo 2", "reference photo 3"]
    recorded = encoder_record(encoder)
    assert adapter["face_encoder"] == recorded
    reference_hashes = sorted(decision["sha256"] for decision in report["references"])
    assert len(report["images"]) == 2
    for image in report["images"]:
        assert image["method"] == "faceid" and image["parameters"]["ip_adapter_scale"] == 1.0
        assert image["parameters"]["prompt"].count("a person") == 1  # no LoRA token without a LoRA
        data = (tmp_path / "pack" / image["file"]).read_bytes()
        verdict = verify_image(data, provenance.trust)
        assert verdict.label == image["label"] == "ai_verified"
        assert sorted(i["sha256"] for i in verdict.c2pa.ingredients) == reference_hashes
        created = _created_action(data)
        assert created["parameters"]["identity_method"] == "faceid"
        assert created["parameters"]["model_hashes"] == {
            "sdxl-base": model.sha256,
            "ip-adapter-faceid": adapter["sha256"],
            "face-encoder": recorded["recogniser"]["sha256"],
            "face-detector": recorded["detector"]["sha256"],
        }
        assert "IP-Adapter FaceID" in created["softwareAgent"]["name"]
    sheet = (tmp_path / "pack" / "index.html").read_text()
    assert "Identity method <b>faceid</b>" in sheet and "made by <b>faceid</b>" in sheet
    assert "Likeness measured with dlib, not with insightface ArcFace" in sheet


def test_hybrid_pack_trains_a_lora_and_stacks_the_adapter(
    tiny_model, tiny_faceid, tiny_insightface_pack, provenance, tmp_path
):
    from scoring.faces import DlibBackend

    model = load_model(tiny_model)
    references = [ReferenceInput(name, (FACES / name).read_bytes()) for name in PHOTOS]
    method = IdentityMethod("hybrid", tiny_faceid, tiny_insightface_pack, adapter_scale=0.3)
    report = make_pack(model, references, tmp_path / "pack", _settings(method, count=1), provenance, DlibBackend())

    assert (tmp_path / "pack" / "lora" / LORA_FILE).exists() and len(report["training"]["loss"]) == 2
    assert sorted(model.pipeline.get_active_adapters()) == ["faceid_0", "identity"]  # both act on the UNet
    assert report["method"] == "hybrid" and report["adapter"]["scale"] == 0.3
    image = report["images"][0]
    assert image["method"] == "hybrid" and "hsk person" in image["parameters"]["prompt"]
    data = (tmp_path / "pack" / image["file"]).read_bytes()
    assert verify_image(data, provenance.trust).label == "ai_verified"
    created = _created_action(data)
    assert created["parameters"]["identity_method"] == "hybrid"
    assert set(created["parameters"]["model_hashes"]) == {
        "sdxl-base",
        "identity-lora",
        "ip-adapter-faceid",
        "face-encoder",
        "face-detector",
    }
    assert created["parameters"]["model_hashes"]["identity-lora"] == report["lora"]["sha256"]
    assert report["likeness"] == {
        "encoder": "dlib",
        "conditioning_encoder": "insightface ArcFace",
        "note": (
            "likeness is measured with dlib, not with the ArcFace embedding that conditioned the adapter: "
            "a score from the conditioning encoder would flatter the likeness"
        ),
    }


def test_an_empty_insightface_pack_fails_before_anything_is_rendered(tiny_model, tiny_faceid, provenance, tmp_path):
    from scoring.faces import DlibBackend

    pytest.importorskip("insightface")
    (tmp_path / "empty-pack").mkdir()
    method = IdentityMethod("faceid", tiny_faceid, tmp_path / "empty-pack")
    with pytest.raises(PackError, match=r"HEADSHOT_INSIGHTFACE_PACK .*found: no \.onnx files"):
        make_pack(
            load_model(tiny_model),
            [ReferenceInput(name, (FACES / name).read_bytes()) for name in PHOTOS],
            tmp_path / "pack",
            _settings(method),
            provenance,
            DlibBackend(),
        )
    assert not (tmp_path / "pack").exists()


def test_newcomer_first_try_with_the_tiny_models(tmp_path, monkeypatch):
    """`headshot models tiny DIR`, then a faceid pack from it, as the README's first try says."""
    pytest.importorskip("insightface")
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("HEADSHOT_IP_ADAPTER", raising=False)
    tiny = tmp_path / "tiny"
    written = CliRunner().invoke(app, ["models", "tiny", str(tiny)])
    assert written.exit_code == 0, written.output
    assert (tiny / "ip-adapter-faceid" / WEIGHTS_FILE).exists() and sorted(
        path.name for path in (tiny / "insightface").glob("*.onnx")
    ) == ["tiny_arcface.onnx", "tiny_scrfd.onnx"]
    references = [arg for name in PHOTOS for arg in ("--reference", str(FACES / name))]
    common = ["pack", "--model", str(tiny), "--out", str(tmp_path / "out"), "--styles", "modern-office"]
    common += ["--count", "1", "--inference-steps", "2", "--size", "64", *references]

    monkeypatch.delenv("HEADSHOT_INSIGHTFACE_PACK", raising=False)
    refused = CliRunner().invoke(app, [*common, "--identity", "faceid"])
    assert refused.exit_code == 1
    assert "identity method faceid needs IP-Adapter FaceID weights" in refused.output
    assert "HEADSHOT_INSIGHTFACE_PACK" in refused.output and not (tmp_path / "out").exists()

    monkeypatch.setenv("HEADSHOT_INSIGHTFACE_PACK", str(tiny / "insightface"))
    made = CliRunner().invoke(app, [*common, "--identity", "faceid", "--ip-adapter", str(tiny / "ip-adapter-faceid")])
    assert made.exit_code == 0, made.output
    assert "1 disclosed images made by faceid" in made.output
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["method"] == "faceid" and report["images"][0]["label"] == "ai_verified"
    assert report["adapter"]["file"] == str(tiny / "ip-adapter-faceid" / WEIGHTS_FILE)

    licences = CliRunner().invoke(app, ["models", "licences"])
    assert "IP-Adapter FaceID" in licences.output and "non-commercial research" in licences.output
