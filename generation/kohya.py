"""The identity LoRA in kohya's format, the one AUTOMATIC1111, Forge, ComfyUI, SD.Next and InvokeAI load.

kohya-ss/sd-scripts (networks/lora.py) names each LoRA module `lora_unet_` + the module's path in the
original (SGM) SDXL UNet with dots turned into underscores, e.g.
`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`, and stores three tensors for it:
`.lora_down.weight` (peft's lora_A), `.lora_up.weight` (lora_B) and `.alpha`, a scalar; a loader applies
`up @ down * alpha / rank`. diffusers' own `convert_state_dict_to_kohya` writes alpha = rank for every
module, which silently rescales a LoRA trained with alpha != rank, so the alpha here is the trained one.
The safetensors metadata carries kohya's `ss_*` keys and the Stability model-spec keys that UIs read to
tell an SDXL LoRA (and its trigger words) from others.
"""

import json
from pathlib import Path

from generation.lora_files import LORA_FILE
from generation.sgm import unet_key

KOHYA_FILE = "headshot_identity_kohya.safetensors"
KOHYA_PREFIX = "lora_unet_"
DIFFUSERS_SUFFIXES = {".lora.down.weight": "lora_down.weight", ".lora.up.weight": "lora_up.weight"}


class KohyaExportError(ValueError):
    """The LoRA folder cannot be exported; the message says what is missing."""


def kohya_module_name(diffusers_module: str, unet_config) -> str:
    """`down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q` -> `lora_unet_input_blocks_4_1_..._to_q`."""
    original = unet_key(f"{diffusers_module}.weight", unet_config.layers_per_block, unet_config.up_block_types)
    return KOHYA_PREFIX + original.removesuffix(".weight").replace(".", "_")


def export_kohya(lora_dir: Path, unet_config) -> Path:
    """Write `lora_dir/KOHYA_FILE` from the diffusers-format LoRA in `lora_dir`; return its path.

    `unet_config` is the base model's UNet config (its block layout names the modules).
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    lora_dir = Path(lora_dir)
    source = lora_dir / LORA_FILE
    if not source.is_file():
        raise KohyaExportError(f"no {LORA_FILE} in {lora_dir}; train one with `headshot train --out {lora_dir}`")
    with safe_open(str(source), framework="pt") as lora:
        metadata = json.loads((lora.metadata() or {}).get("lora_adapter_metadata", "{}"))
    tensors = load_file(str(source))
    if "unet.r" not in metadata or "unet.lora_alpha" not in metadata:
        raise KohyaExportError(f"{source} has no adapter metadata (rank and alpha): retrain it with this version")
    rank, alpha = int(metadata["unet.r"]), float(metadata["unet.lora_alpha"])
    converted = {}
    for key, tensor in tensors.items():
        suffix = next((suffix for suffix in DIFFUSERS_SUFFIXES if key.endswith(suffix)), None)
        if suffix is None or not key.startswith("unet."):
            raise KohyaExportError(f"{source}: unexpected key {key!r} (only UNet LoRA layers are exported)")
        module = kohya_module_name(key.removeprefix("unet.").removesuffix(suffix), unet_config)
        converted[f"{module}.{DIFFUSERS_SUFFIXES[suffix]}"] = tensor.contiguous()
        converted[f"{module}.alpha"] = torch.tensor(alpha, dtype=tensor.dtype)
    subject = _trigger_phrase(lora_dir)
    target = lora_dir / KOHYA_FILE
    save_file(
        converted,
        str(target),
        metadata={
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(rank),
            "ss_network_alpha": f"{alpha:g}",
            "ss_base_model_version": "sdxl_base_v1-0",
            "ss_v2": "False",
            "modelspec.sai_model_spec": "1.0.0",
            "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
            "modelspec.implementation": "sgm",
            "modelspec.title": "headshot identity LoRA",
            **({"modelspec.trigger_phrase": subject} if subject else {}),
        },
    )
    return target


def _trigger_phrase(lora_dir: Path) -> str | None:
    """The identifier and class word the LoRA was trained with (from its training.json), e.g. `hsk person`."""
    try:
        config = json.loads((lora_dir / "training.json").read_text())["config"]
        return f"{config['token']} {config['class_word']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None
