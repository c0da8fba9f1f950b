"""The training recipe on the tiny random SDXL: crops and their sizes, batches, sampling, the loss guard,
the identifier, gradient checkpointing, float32 VAE encoding, the checkpoint choice and the kohya export."""

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from generation.kohya import KOHYA_FILE, export_kohya
from generation.lora_files import LORA_FILE, choose_checkpoint, use_saved_lora
from generation.models import MemoryOptions, load_model
from generation.presets import load_presets, select_presets
from generation.render import render
from generation.tiny import SINGLE_FILE_NAME
from generation.training import (
    LikenessCheck,
    TrainingConfig,
    TrainingError,
    TrainingStopped,
    check_identifier,
    train_identity_lora,
)
from generation.training_data import MAX_STEPS, MIN_STEPS, auto_steps, face_weights, prepare_crops, sample_schedule
from tests.conftest import FACES

PHOTOS = ["img1.jpg", "img2.jpg", "img4.jpg"]  # one person
SMALL = dict(rank=4, alpha=8, resolution=64, learning_rate=1e-3, validation_steps=2)


def _photos(names=PHOTOS) -> list[Image.Image]:
    return [Image.open(FACES / name).convert("RGB") for name in names]


def _shrunk(name: str, factor: float) -> Image.Image:
    """A real photo scaled down, as a low-resolution phone crop or a thumbnail would be."""
    image = Image.open(FACES / name).convert("RGB")
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


@pytest.fixture
def model(tiny_model):
    return load_model(tiny_model)


def test_crops_span_face_widths_and_keep_their_real_size():
    config = TrainingConfig(resolution=1024)
    small_face = _shrunk("img4.jpg", 0.2)  # a face 149 px wide in a 500 x 346 photo
    crops, records = prepare_crops([_photos(["img1.jpg"])[0], small_face], config, names=["full", "small"])
    full, small = records
    assert full["used"] and small["used"]
    by_photo = {index: [crop for crop in crops if crop.photo == index] for index in (0, 1)}
    for crop in crops:
        assert crop.pixels.size == (1024, 1024)
        assert crop.time_ids(1024) == [crop.side, crop.side, 0, 0, 1024, 1024]  # the real size, not 1024
        assert crop.face_box is not None
    # the full photo is large enough for 2.2 face widths; wider crops are bounded by the photo itself
    assert by_photo[0][0].face_widths == pytest.approx(2.2, abs=0.01)
    assert [c["side"] for c in full["crops"]] == [crop.side for crop in by_photo[0]]
    # the small photo's crops are upscaled: they say so, and every one is at least a quarter of 1024
    assert all(256 <= crop.side < 1024 for crop in by_photo[1])
    assert [c["original_size"] for c in small["crops"]] == [[crop.side, crop.side] for crop in by_photo[1]]


def test_crops_under_the_minimum_side_are_not_used():
    config = TrainingConfig(resolution=1024)
    tiny_face = _shrunk("img1.jpg", 0.12)  # the whole photo is 166 x 224: any crop would be blown up 6x
    crops, records = prepare_crops([_photos(["img2.jpg"])[0], tiny_face], config, names=["good", "tiny"])
    assert records[0]["used"] and not records[1]["used"]
    assert (
        "too small for 1024 px training" in records[1]["reason"]
        and "under the minimum of 256 px" in records[1]["reason"]
    )
    assert {crop.photo for crop in crops} == {0}
    with pytest.raises(TrainingError, match="no photo can be used for training: tiny: its face is too small"):
        prepare_crops([tiny_face], config, names=["tiny"])


def test_loss_weights_favour_the_dilated_face():
    config = TrainingConfig(resolution=1024)
    crops, _ = prepare_crops(_photos(["img2.jpg"]), config)
    crop = crops[0]
    weights = face_weights(crop, (128, 128), 1024, background=0.25)
    left, top, right, bottom = (value / 8 for value in crop.face_box)  # the face in latent pixels
    assert weights[round((top + bottom) / 2), round((left + right) / 2)] == 1.0
    assert weights[0, 0] == weights[-1, -1] == pytest.approx(0.25)
    # dilated: the face box's own corners (brows, jaw) and a band around them still count fully ...
    assert weights[round(top), round((left + right) / 2)] == 1.0 and weights[round(bottom), round(left + 2)] > 0.9
    # ... but not the whole frame
    assert 0.25 < weights.mean() < 0.9
    uniform = face_weights(crop, (128, 128), 1024, background=1.0)
    assert np.all(uniform == 1.0)


def test_sampling_draws_every_photo_once_per_epoch():
    crops_per_photo = [[0], [1, 2], [3], [4, 5, 6], [7]]
    batches = sample_schedule(crops_per_photo, steps=10, batch_size=2, seed=7)
    assert len(batches) == 10 and all(len(batch) == 2 for batch in batches)
    photo_of = {crop: photo for photo, crops in enumerate(crops_per_photo) for crop in crops}
    drawn = [photo_of[crop] for batch in batches for crop in batch]
    for epoch in range(4):
        assert sorted(drawn[epoch * 5 : (epoch + 1) * 5]) == [0, 1, 2, 3, 4]
    assert sample_schedule(crops_per_photo, 10, 2, seed=7) == batches  # a function of the seed: resumable
    assert sample_schedule(crops_per_photo, 10, 2, seed=8) != batches
    assert len({crop for batch in batches for crop in batch if photo_of[crop] == 3}) > 1  # crops vary


def test_steps_scale_with_photos():
    assert auto_steps(5, 2) == 300 and auto_steps(10, 2) == 600 and auto_steps(10, 4) == 300
    assert auto_steps(1, 4) == MIN_STEPS and auto_steps(100, 1) == MAX_STEPS


def test_unet_sees_batches_and_each_crops_real_size(model, tmp_path):
    """At 128 px, thumbnails (no face the detector can find: centre crops) train from upscaled crops: the
    UNet's size conditioning carries each crop's real side, in batches of the configured size."""
    photos = [_shrunk(name, factor) for name, factor in (("img1.jpg", 0.06), ("img2.jpg", 0.07))]
    config = TrainingConfig(steps=3, batch_size=3, checkpoint_every=3, **{**SMALL, "resolution": 128})
    seen = []

    def capture(module, args, kwargs):
        seen.append((args[0].shape[0], kwargs["added_cond_kwargs"]["time_ids"].tolist()))

    hook = model.pipeline.unet.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        train_identity_lora(model.pipeline, photos, tmp_path / "lora", config)
    finally:
        hook.remove()
    record = json.loads((tmp_path / "lora" / "training.json").read_text())
    sides = [crop["side"] for photo in record["photos"] for crop in photo["crops"]]
    assert sides == [min(photo.size) for photo in photos] == [83, 81]  # both upscaled to 128
    assert len(seen) == 3
    for batch, time_ids in seen:
        assert batch == 3 and len(time_ids) == 3
        for side, side_again, top, left, target_height, target_width in time_ids:
            assert side in sides and side_again == side and (top, left) == (0, 0)
            assert (target_height, target_width) == (128, 128)
    assert {row[0] for _, time_ids in seen for row in time_ids} == set(sides)  # both photos were drawn
    assert record["config"]["batch_size"] == 3 and record["steps"] == 3


def test_steps_default_to_the_photos_count(model, tmp_path):
    def stop(progress):
        totals.append(progress.total)
        raise TrainingStopped

    totals = []
    config = TrainingConfig(batch_size=4, **SMALL)
    result = train_identity_lora(model.pipeline, _photos(), tmp_path / "lora", config, stop)
    assert totals == [auto_steps(3, 4)] and result.steps_done == 1 and result.lora_path is None


def test_the_loss_is_read_from_the_device_every_few_steps(model, tmp_path):
    progress = []
    config = TrainingConfig(steps=12, log_every=5, checkpoint_every=100, **SMALL)
    result = train_identity_lora(model.pipeline, _photos(), tmp_path / "lora", config, progress.append)
    assert [p.step for p in progress] == list(range(1, 13))  # progress (and a chance to cancel) at every step
    assert [p.step for p in progress if p.loss is not None] == [5, 10, 12]  # the loss only when read back
    assert progress[4].loss == pytest.approx(sum(result.losses[:5]) / 5)
    record = json.loads((tmp_path / "lora" / "training.json").read_text())
    assert record["steps"] == 12 and record["steps_chosen_by"] == "given"
    assert len(record["losses"]) == 12 and all(np.isfinite(record["losses"]))


def test_a_diverging_loss_stops_training(model, tmp_path):
    config = TrainingConfig(steps=20, checkpoint_every=2, log_every=1, **{**SMALL, "learning_rate": 1e3})
    with pytest.raises(TrainingError, match=r"training diverged: .* (at|after) step \d+.*Lower the") as err:
        train_identity_lora(model.pipeline, _photos(), tmp_path / "lora", config)
    bad_step = int(re.search(r"(?:at|after) step (\d+)", str(err.value))[1])
    assert not (tmp_path / "lora" / LORA_FILE).exists() and not (tmp_path / "lora" / "training.json").exists()
    saved = sorted((tmp_path / "lora" / "checkpoints").glob("step-*"))
    for checkpoint in saved:  # what was saved before the divergence is finite, and nothing after it
        state = torch.load(checkpoint / "state.pt", weights_only=False)
        assert state["step"] < bad_step
        assert all(torch.isfinite(value).all() for value in state["lora"].values()), checkpoint.name
        assert all(np.isfinite(state["losses"]))


def test_identifier_is_checked_against_both_tokenizers(model):
    checked = check_identifier(model.pipeline, TrainingConfig())
    assert checked["pieces"]["tokenizer"] == checked["pieces"]["tokenizer_2"] == ["h", "s", "k</w>"]
    with pytest.raises(TrainingError, match="splits into 7 pieces"):
        check_identifier(model.pipeline, TrainingConfig(token="zqxjvbw"))
    with pytest.raises(TrainingError, match="contains the common word"):
        check_identifier(model.pipeline, TrainingConfig(token="photo"))
    with pytest.raises(TrainingError, match="unknown class word 'dog'"):
        TrainingConfig(class_word="dog")
    with pytest.raises(TrainingError, match="lower-case letters"):
        TrainingConfig(token="Hs K")


def test_class_word_reaches_the_caption_and_the_renders(model, tmp_path):
    from generation.pack import trained_subject

    config = TrainingConfig(steps=2, class_word="woman", checkpoint_every=2, **SMALL)
    train_identity_lora(model.pipeline, _photos(), tmp_path / "lora", config)
    record = json.loads((tmp_path / "lora" / "training.json").read_text())
    assert record["identifier"]["class_word"] == "woman" and record["config"]["class_word"] == "woman"
    assert trained_subject(tmp_path / "lora", "hsk person") == "hsk woman"


def test_gradient_checkpointing_is_a_setting_that_changes_nothing_but_memory(tiny_model, tmp_path):
    results, during = {}, {}
    for checkpointing in (False, True):
        pipeline = load_model(tiny_model).pipeline
        config = TrainingConfig(steps=3, gradient_checkpointing=checkpointing, checkpoint_every=3, **SMALL)
        seen = during[checkpointing] = []

        def note(progress, unet=pipeline.unet, seen=seen):
            seen.append(unet.is_gradient_checkpointing)

        results[checkpointing] = train_identity_lora(pipeline, _photos(), tmp_path / str(checkpointing), config, note)
        assert pipeline.unet.is_gradient_checkpointing is False  # switched off again for rendering
    assert during == {False: [False] * 3, True: [True] * 3}
    assert results[True].losses == pytest.approx(results[False].losses, rel=1e-5)
    plain, recomputed = load_file(results[False].lora_path), load_file(results[True].lora_path)
    for key in plain:
        np.testing.assert_allclose(recomputed[key].numpy(), plain[key].numpy(), rtol=1e-4, atol=1e-6)


def test_vae_encodes_in_float32_when_the_model_runs_in_bfloat16(tiny_model, tmp_path):
    model = load_model(tiny_model, device="cpu", dtype="bfloat16")
    vae = model.pipeline.vae
    encoded = []
    hook = vae.encoder.register_forward_pre_hook(lambda module, args: encoded.append(args[0].dtype))
    try:
        config = TrainingConfig(steps=2, checkpoint_every=2, **SMALL)
        result = train_identity_lora(model.pipeline, _photos(), tmp_path / "lora", config)
    finally:
        hook.remove()
    assert encoded and set(encoded) == {torch.float32}  # SDXL's VAE overflows in 16 bits: it encodes in fp32
    assert vae.dtype == torch.bfloat16  # ... and goes back to the model's dtype afterwards
    record = json.loads((tmp_path / "lora" / "training.json").read_text())
    assert record["dtype"] == "bfloat16" and all(np.isfinite(result.losses))


def test_choose_checkpoint():
    records = [
        {"step": 100, "likeness": 0.41, "images": 4},
        {"step": 200, "likeness": 0.63, "images": 4},
        {"step": 300, "likeness": 0.63, "images": 4},
        {"step": 400, "likeness": 0.52, "images": 4},
    ]
    assert choose_checkpoint(records)["step"] == 300  # the best, the later one on a tie
    nothing = choose_checkpoint([{**record, "likeness": 0.0} for record in records])
    assert nothing["step"] == 400 and "no validation render showed the person" in nothing["reason"]
    assert choose_checkpoint([]) is None


@pytest.fixture(scope="module")
def tiny_face_backend(tmp_path_factory):
    """The tiny insightface models find a "face" in any bright render (see the test using them)."""
    pytest.importorskip("insightface")  # optional: see scoring/insightface_backend.py
    from scoring.insightface_backend import InsightFaceBackend
    from scoring.tiny_insightface import build_detector, build_recogniser

    pack = tmp_path_factory.mktemp("tiny-insightface")
    build_detector(pack / "det_10g.onnx")
    build_recogniser(pack / "w600k_r50.onnx")
    return InsightFaceBackend(pack)


def test_the_best_checkpoint_becomes_the_lora_and_training_json_says_which(model, tmp_path, tiny_face_backend):
    """Validation renders are scored at every checkpoint; the LoRA saved is the checkpoint they liked best.

    The tiny insightface models (scoring/tiny_insightface.py) find a face at a fixed place in any
    bright image, with an embedding of its pixels, so the tiny model's renders get a likeness that moves
    with training (dlib finds no face in noise)."""
    from diffusers.utils import convert_state_dict_to_diffusers

    from scoring.score import build_identity

    identity = build_identity([(name, photo) for name, photo in zip(PHOTOS, _photos(), strict=True)], tiny_face_backend)
    config = TrainingConfig(steps=30, checkpoint_every=10, **{**SMALL, "learning_rate": 1e-2})
    weights = {}

    def keep_weights(folder):  # only the latest checkpoints stay on disk: read each one as it is written
        state = torch.load(folder / "state.pt", weights_only=False)
        weights[state["step"]] = {f"unet.{k}": v for k, v in convert_state_dict_to_diffusers(state["lora"]).items()}

    result = train_identity_lora(
        model.pipeline,
        _photos(),
        tmp_path / "lora",
        config,
        check=LikenessCheck(identity, tiny_face_backend),
        on_checkpoint=keep_weights,
    )
    record = json.loads((tmp_path / "lora" / "training.json").read_text())
    checkpoints = record["checkpoints"]
    assert [c["step"] for c in checkpoints] == [10, 20, 30]
    assert all(c["images"] == 4 and c["faces"] == 4 and 0 < c["likeness"] < 1 for c in checkpoints)
    assert len({c["likeness"] for c in checkpoints}) == 3  # the likeness moves with training
    best = max(checkpoints, key=lambda c: (c["likeness"], c["step"]))
    assert record["chosen_checkpoint"]["step"] == best["step"] == result.chosen_step
    assert record["chosen_checkpoint"]["reason"].startswith("highest mean likeness of its 4 validation renders")
    saved = load_file(result.lora_path)
    assert sorted(weights) == [10, 20, 30]
    for key, value in saved.items():  # the LoRA file holds exactly the chosen checkpoint's weights ...
        torch.testing.assert_close(value, weights[best["step"]][key], rtol=0, atol=0)
    others = [step for step in weights if step != best["step"]]  # ... and no other checkpoint's
    assert all(any(not torch.equal(saved[k], weights[step][k]) for k in saved) for step in others)


@pytest.fixture(scope="module")
def trained_lora(tiny_model, tmp_path_factory):
    """A LoRA with alpha 8 != rank 4, so a loader that ignores alpha renders it at the wrong strength."""
    pipeline = load_model(tiny_model).pipeline
    directory = tmp_path_factory.mktemp("kohya") / "lora"
    config = TrainingConfig(steps=20, checkpoint_every=20, **{**SMALL, "learning_rate": 1e-2})
    train_identity_lora(pipeline, _photos(), directory, config)
    return directory


def _render(pipeline) -> np.ndarray:
    presets = select_presets(load_presets(), ["corporate-grey"])
    image = render(pipeline, presets, "hsk person", 1, seed=5, steps=2, size=64)[0].pixels
    return np.asarray(image, dtype=np.float32)


def test_kohya_export_names_modules_and_alphas_as_kohya_does(tiny_model, trained_lora):
    pipeline = load_model(tiny_model).pipeline
    path = export_kohya(trained_lora, pipeline.unet.config)
    assert path == trained_lora / KOHYA_FILE
    tensors = load_file(path)
    with safe_open(str(path), framework="pt") as exported:
        metadata = exported.metadata()
    # ComfyUI's key map (comfy/lora.py, model_lora_keys_unet): "lora_unet_" + each original UNet weight's
    # name without ".weight", dots as underscores; the tiny single file holds the original names.
    original = load_file(tiny_model / SINGLE_FILE_NAME)
    comfy_keys = {
        "lora_unet_" + key.removeprefix("model.diffusion_model.").removesuffix(".weight").replace(".", "_")
        for key in original
        if key.startswith("model.diffusion_model.") and key.endswith(".weight")
    }
    modules = {}
    for key, value in tensors.items():
        module, _, part = key.partition(".")
        assert part in ("lora_down.weight", "lora_up.weight", "alpha"), key
        assert module in comfy_keys, module
        modules.setdefault(module, {})[part] = value
    diffusers_file = load_file(trained_lora / LORA_FILE)
    assert len(modules) * 2 == len(diffusers_file)  # every trained module, each with down, up and alpha
    for parts in modules.values():
        assert set(parts) == {"lora_down.weight", "lora_up.weight", "alpha"}
        assert parts["lora_down.weight"].shape[0] == 4 and parts["lora_up.weight"].shape[1] == 4  # rank 4
        assert parts["alpha"].shape == () and parts["alpha"].item() == 8.0  # the trained alpha, not the rank
    # as in SDXL, the first down block has no attention and the second's first attention is input block 4
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in modules
    assert not any(module.startswith("lora_unet_input_blocks_1_") for module in modules)
    assert "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_out_0" in modules
    assert metadata["ss_network_module"] == "networks.lora" and metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert (metadata["ss_network_dim"], metadata["ss_network_alpha"]) == ("4", "8")
    assert metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert metadata["modelspec.trigger_phrase"] == "hsk person"


def test_kohya_file_renders_like_the_diffusers_file(tiny_model, trained_lora, tmp_path):
    """diffusers reads kohya files too (its SGM -> diffusers conversion applies alpha / rank): loaded from
    the kohya file, the LoRA renders exactly as the diffusers-format file does. diffusers' own converter
    (convert_state_dict_to_kohya, used by its training scripts' --output_kohya_format) writes alpha = rank,
    which renders this alpha-8, rank-4 LoRA at half strength."""
    from diffusers.utils import convert_all_state_dict_to_peft, convert_state_dict_to_kohya
    from safetensors.torch import save_file

    pipeline = load_model(tiny_model).pipeline
    export_kohya(trained_lora, pipeline.unet.config)
    without = _render(pipeline)
    use_saved_lora(pipeline, trained_lora)
    from_diffusers = _render(pipeline)
    pipeline.delete_adapters("identity")
    pipeline.load_lora_weights(str(trained_lora), weight_name=KOHYA_FILE, adapter_name="kohya")
    from_kohya = _render(pipeline)
    pipeline.delete_adapters("kohya")
    assert np.abs(from_diffusers - without).max() > 10
    np.testing.assert_allclose(from_kohya, from_diffusers, atol=1.0)

    rank_as_alpha = convert_state_dict_to_kohya(convert_all_state_dict_to_peft(load_file(trained_lora / LORA_FILE)))
    assert {value.item() for key, value in rank_as_alpha.items() if key.endswith(".alpha")} == {4}
    save_file(rank_as_alpha, tmp_path / "rank-as-alpha.safetensors")
    pipeline.load_lora_weights(str(tmp_path), weight_name="rank-as-alpha.safetensors", adapter_name="rank_as_alpha")
    assert np.abs(_render(pipeline) - from_diffusers).max() > 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU: offload, fp16 scaling and autocast")
@pytest.mark.parametrize(
    ("dtype", "offload", "checkpointing"),
    [("float16", True, False), ("bfloat16", False, True), ("float16", False, True)],
)
def test_training_on_cuda(tiny_model, tmp_path, dtype, offload, checkpointing):
    """The GPU-only paths: the pipeline's execution device under CPU offload (the UNet's weights sit on the
    CPU between calls), autocast, the fp16 gradient scaler, float32 VAE encoding, gradient checkpointing."""
    if dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model = load_model(tiny_model, device="cuda", dtype=dtype, memory=MemoryOptions(cpu_offload=offload))
    config = TrainingConfig(steps=6, checkpoint_every=3, gradient_checkpointing=checkpointing, **SMALL)
    result = train_identity_lora(model.pipeline, _photos(), tmp_path / "lora", config)
    record = json.loads((tmp_path / "lora" / "training.json").read_text())
    assert record["device"].startswith("cuda") and record["dtype"] == dtype and record["autocast"] is True
    assert record["grad_scaler"] is (dtype == "float16")
    assert len(result.losses) == 6 and all(np.isfinite(result.losses))
    assert all(torch.isfinite(value).all() for value in load_file(result.lora_path).values())
    use_saved_lora(model.pipeline, tmp_path / "lora")
    assert _render(model.pipeline).std() > 1.0
