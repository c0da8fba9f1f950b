import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from generation.models import (
    HASH_CACHE_FILE,
    LoadedModel,
    MemoryOptions,
    ModelError,
    choose_device,
    load_model,
    model_hash,
)
from generation.tiny import SINGLE_FILE_NAME, write_tiny_model

COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


def render(model: LoadedModel, seed: int = 0) -> np.ndarray:
    """Two Euler steps at 64x64; the seeded CPU generator makes the starting noise the same on every device."""
    model.pipeline.set_progress_bar_config(disable=True)
    return model.pipeline(
        "a professional headshot, studio lighting",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="np",
    ).images[0]


@pytest.fixture(scope="module")
def folder_model(tiny_model) -> LoadedModel:
    return load_model(tiny_model)


@pytest.fixture(scope="module")
def single_file_model(tiny_model, tiny_config) -> LoadedModel:
    return load_model(tiny_model / SINGLE_FILE_NAME, config=tiny_config)


def test_folder_and_single_file_hold_the_same_weights(folder_model, single_file_model):
    device, dtype = choose_device()
    for model in (folder_model, single_file_model):
        assert model.device == device
        assert model.dtype_name == str(dtype).removeprefix("torch.")
        assert model.pipeline.unet.dtype == dtype
        assert model.pipeline.unet.device.type == torch.device(device).type
        assert model.applied == ()
    for name in COMPONENTS:
        folder_weights = getattr(folder_model.pipeline, name).state_dict()
        single_weights = getattr(single_file_model.pipeline, name).state_dict()
        assert folder_weights.keys() == single_weights.keys(), name
        different = [key for key in folder_weights if not torch.equal(folder_weights[key], single_weights[key])]
        assert different == [], f"{name}: {different[:5]}"


def test_folder_and_single_file_render_identical_images(folder_model, single_file_model):
    from_folder = render(folder_model)
    from_single_file = render(single_file_model)
    # Bit-identical weights, the same kernels and the same starting noise give the same pixels. On the CPU
    # that is exact; a GPU may pick a different reduction order between two runs, hence 1e-3 there
    # (a wrong weight anywhere moves pixels by far more than that).
    tolerance = 0.0 if folder_model.device == "cpu" else 1e-3
    np.testing.assert_allclose(from_single_file, from_folder, rtol=0, atol=tolerance)
    assert from_folder.shape == (64, 64, 3)
    assert np.isfinite(from_folder).all()
    # Noise from a random model, but an image: pixels vary, and a different seed gives a different image.
    assert from_folder.std() > 0.02
    assert len(np.unique(from_folder.round(3))) > 100
    assert not np.allclose(render(folder_model, seed=1), from_folder, atol=1e-2)


def test_tiny_model_is_deterministic_documented_and_in_the_original_layout(tiny_model, tmp_path):
    again = write_tiny_model(tmp_path / "again", seed=0)
    other = write_tiny_model(tmp_path / "other", seed=1)
    assert model_hash(again / SINGLE_FILE_NAME) == model_hash(tiny_model / SINGLE_FILE_NAME)
    assert model_hash(other / SINGLE_FILE_NAME) != model_hash(tiny_model / SINGLE_FILE_NAME)
    readme = (tiny_model / "README.md").read_text().lower()
    assert "random" in readme and "noise" in readme
    keys = load_file(tiny_model / SINGLE_FILE_NAME).keys()
    for key in (
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",
        "first_stage_model.decoder.up.0.block.0.conv1.weight",
        "first_stage_model.encoder.mid.attn_1.q.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
        "conditioner.embedders.1.model.text_projection",
    ):
        assert key in keys, key
    assert not any(key.startswith(("unet.", "vae.", "down_blocks.")) for key in keys)


def test_tokenizers_take_any_prompt(folder_model):
    tokenizer = folder_model.pipeline.tokenizer
    ids = tokenizer("A headshot in Zürich, 50mm lens — smiling!").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert len(tokenizer("a photo of a person").input_ids) == 7  # common words are single tokens


def test_hash_is_stable_and_matches_the_loaded_model(tiny_model, folder_model, single_file_model):
    assert model_hash(tiny_model) == model_hash(tiny_model) == folder_model.sha256
    single_file = tiny_model / SINGLE_FILE_NAME
    assert single_file_model.sha256 == hashlib.sha256(single_file.read_bytes()).hexdigest()
    assert folder_model.sha256 != single_file_model.sha256


def test_hash_is_cached_and_follows_changes(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    cache_dir = tmp_path / "cache"
    first = model_hash(model, cache_dir)
    assert first == model_hash(tiny_model)  # content, not location: a copy hashes the same

    cache_file = cache_dir / HASH_CACHE_FILE
    cache = json.loads(cache_file.read_text())
    assert cache[str(model.resolve())]["sha256"] == first
    # A second call answers from the cache without reading the weights: a planted value comes back.
    cache[str(model.resolve())]["sha256"] = "0" * 64
    cache_file.write_text(json.dumps(cache))
    assert model_hash(model, cache_dir) == "0" * 64

    weights = model / "unet" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1
    save_file(tensors, weights)
    changed = model_hash(model, cache_dir)
    assert changed not in (first, "0" * 64)
    assert model_hash(model) == changed  # the same answer without a cache

    cache = json.loads(cache_file.read_text())
    cache[str(model.resolve())]["sha256"] = "1" * 64
    cache_file.write_text(json.dumps(cache))
    os.utime(weights, ns=(10**9, 10**9))  # the same bytes with a new modification time
    assert model_hash(model, cache_dir) == changed  # the planted entry is no longer trusted


def test_missing_path(tmp_path):
    with pytest.raises(ModelError, match=r"model not found.*model_index.json"):
        load_model(tmp_path / "nowhere")


def test_folder_without_model_index(tmp_path):
    (tmp_path / "unet").mkdir()
    with pytest.raises(ModelError, match=r"expected model_index.json, found unet/"):
        load_model(tmp_path)


def test_folder_missing_unet_weights(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns(SINGLE_FILE_NAME))
    (model / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"unet/ has no weights \(expected diffusion_pytorch_model.safetensors\)"):
        load_model(model)


def test_folder_with_corrupt_weights(tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model, ignore=shutil.ignore_patterns(SINGLE_FILE_NAME))
    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelError, match="could not load the diffusers folder"):
        load_model(model)


def test_single_file_needs_a_config(tiny_model):
    with pytest.raises(ModelError, match=r"--config.*HEADSHOT_SDXL_CONFIG"):
        load_model(tiny_model / SINGLE_FILE_NAME)


def test_single_file_config_must_be_a_diffusers_folder(tiny_model, tmp_path):
    with pytest.raises(ModelError, match=r"config folder .* expected model_index.json"):
        load_model(tiny_model / SINGLE_FILE_NAME, config=tmp_path)


def test_corrupt_single_file(tiny_model, tiny_config, tmp_path):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes((tiny_model / SINGLE_FILE_NAME).read_bytes()[:4096])
    with pytest.raises(ModelError, match=r"not a readable safetensors file.*incomplete or corrupt"):
        load_model(truncated, config=tiny_config)


def test_single_file_that_is_not_sdxl(tiny_config, tmp_path):
    other = tmp_path / "other.safetensors"
    save_file({"first_stage_model.decoder.conv_in.weight": torch.zeros(1)}, other)
    with pytest.raises(ModelError, match="not a complete SDXL checkpoint: no UNet, CLIP ViT-L"):
        load_model(other, config=tiny_config)


def test_memory_options_take_effect(tiny_model, folder_model):
    assert folder_model.pipeline.vae.use_tiling is False
    assert folder_model.pipeline.vae.use_slicing is False
    model = load_model(tiny_model, memory=MemoryOptions(vae_tiling=True, vae_slicing=True))
    assert model.pipeline.vae.use_tiling is True
    assert model.pipeline.vae.use_slicing is True
    assert model.applied == ("vae_tiling", "vae_slicing")


def test_cpu_offload_needs_cuda(tiny_model):
    with pytest.raises(ModelError, match="CPU offload needs a CUDA device"):
        load_model(tiny_model, device="cpu", memory=MemoryOptions(cpu_offload=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_offload_on_cuda(tiny_model):
    model = load_model(tiny_model, device="cuda", memory=MemoryOptions(cpu_offload=True))
    assert model.applied == ("cpu_offload",)
    assert model.pipeline.unet.device.type == "cpu"  # moved to the GPU only while it runs
    assert render(model).std() > 0.02


def test_choose_device_on_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device() == ("cpu", torch.float32)
    assert choose_device("cpu") == ("cpu", torch.float32)
    assert choose_device("auto", "bf16") == ("cpu", torch.bfloat16)
    with pytest.raises(ModelError, match="no CUDA GPU is available here"):
        choose_device("cuda")
    with pytest.raises(ModelError, match="float16 is not supported on the CPU"):
        choose_device("cpu", "float16")
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        choose_device("tpu")
    with pytest.raises(ModelError, match="unknown dtype 'int8'"):
        choose_device("cpu", "int8")


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_choose_device_prefers_cuda(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert choose_device() == ("cuda", expected)
    assert choose_device("cuda:0", "float32") == ("cuda:0", torch.float32)
    with pytest.raises(ModelError, match="this machine has 1 GPU"):
        choose_device("cuda:1")
    if not bf16:
        with pytest.raises(ModelError, match="does not support bfloat16"):
            choose_device("cuda", "bfloat16")
