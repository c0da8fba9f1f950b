"""A tiny, random IP-Adapter FaceID for the tiny SDXL (generation/tiny.py): tests and demos only.

`write_tiny_faceid_adapter(directory, model_dir)` writes `ip-adapter-faceid_sdxl.safetensors` with the state
dict layout of h94's `ip-adapter-faceid_sdxl.bin`, sized for the UNet in `model_dir`, so that diffusers'
own `load_ip_adapter` reads it as it reads the real one:

    image_proj.proj.0.{weight,bias}   Linear(512 -> 1024)          (the ArcFace embedding in)
    image_proj.proj.2.{weight,bias}   Linear(1024 -> 4 x cross-attention width)
    image_proj.norm.{weight,bias}     LayerNorm(cross-attention width)
    ip_adapter.<n>.to_k_ip.weight     for each cross-attention n = 1, 3, 5, ... (UNet attention order)
    ip_adapter.<n>.to_v_ip.weight
    ip_adapter.<n>.to_{q,k,v,out}_lora.{down,up}.weight   for every attention n = 0, 1, 2, ...
                                      (the LoRA FaceID checkpoints carry; diffusers loads it as `faceid_0`)

Safetensors with `image_proj.` / `ip_adapter.` prefixes is a layout diffusers reads beside the pickled .bin.
"""

from pathlib import Path

WEIGHTS_FILE = "ip-adapter-faceid_sdxl.safetensors"
EMBEDDING_SIZE = 512  # ArcFace
PROJECTION_MULTIPLIER = 2  # the real adapter's hidden layer is twice the embedding
TOKENS = 4
LORA_RANK = 4  # the real one is 128
WEIGHT_STD = 0.1  # large enough that the embedding visibly changes the tiny model's noise
README = """# Tiny random IP-Adapter FaceID (tests and demos only)

`{weights}` has the layout of IP-Adapter FaceID for SDXL (h94/IP-Adapter-FaceID, `ip-adapter-faceid_sdxl.bin`)
sized for the tiny random SDXL beside it, and loads through diffusers' `load_ip_adapter`. Its weights are
random: it carries no identity. Use it with the tiny insightface pack to try `--identity faceid` offline.
seed: {seed}
"""


def write_tiny_faceid_adapter(directory: Path, model_dir: Path, seed: int = 0) -> Path:
    """Write the tiny adapter for the UNet of the diffusers folder `model_dir` into `directory`; return it."""
    import torch
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    unet = UNet2DConditionModel.from_pretrained(Path(model_dir) / "unet", local_files_only=True)
    generator = torch.Generator().manual_seed(seed)

    def random(*shape: int):
        return torch.randn(*shape, generator=generator) * WEIGHT_STD

    width = unet.config.cross_attention_dim
    hidden = EMBEDDING_SIZE * PROJECTION_MULTIPLIER
    state = {
        "image_proj.proj.0.weight": random(hidden, EMBEDDING_SIZE),
        "image_proj.proj.0.bias": random(hidden),
        "image_proj.proj.2.weight": random(width * TOKENS, hidden),
        "image_proj.proj.2.bias": random(width * TOKENS),
        "image_proj.norm.weight": torch.ones(width),
        "image_proj.norm.bias": torch.zeros(width),
    }
    for number, name in enumerate(unet.attn_processors):
        channels = _hidden_size(name, unet.config.block_out_channels)
        context = channels if name.endswith("attn1.processor") else width
        for part, features in (("to_q", channels), ("to_k", context), ("to_v", context), ("to_out", channels)):
            state[f"ip_adapter.{number}.{part}_lora.down.weight"] = random(LORA_RANK, features)
            state[f"ip_adapter.{number}.{part}_lora.up.weight"] = random(channels, LORA_RANK)
        if not name.endswith("attn1.processor"):
            state[f"ip_adapter.{number}.to_k_ip.weight"] = random(channels, width)
            state[f"ip_adapter.{number}.to_v_ip.weight"] = random(channels, width)
    save_file({key: value.contiguous() for key, value in state.items()}, directory / WEIGHTS_FILE)
    (directory / "README.md").write_text(README.format(weights=WEIGHTS_FILE, seed=seed))
    return directory


def _hidden_size(processor: str, block_out_channels: tuple[int, ...]) -> int:
    """The channels of an attention processor's block, as diffusers' IP-Adapter loader computes them."""
    if processor.startswith("mid_block"):
        return block_out_channels[-1]
    if processor.startswith("up_blocks"):
        return list(reversed(block_out_channels))[int(processor.split(".")[1])]
    return block_out_channels[int(processor.split(".")[1])]
