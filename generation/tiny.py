"""A tiny, randomly initialised SDXL pipeline for tests and demos: real classes, noise for output.

`write_tiny_model(directory)` writes, offline and deterministically for a seed:

    model_index.json, unet/, vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/
                            a diffusers folder (`StableDiffusionXLPipeline.from_pretrained`)
    tiny-sdxl.safetensors   the same weights in the original (SGM) single-file key layout
                            (`StableDiffusionXLPipeline.from_single_file(path, config=directory)`)
    README.md               says that the model is random and produces noise

The key conversion (here for the VAE and text encoders, in `generation/sgm.py` for the UNet) is the inverse of
the original -> diffusers mapping that diffusers applies in `from_single_file` (diffusers/loaders/single_file_utils.py).
"""

import itertools
from pathlib import Path

from generation.sgm import dotted, unet_key

SINGLE_FILE_NAME = "tiny-sdxl.safetensors"

TEXT_ENCODER_HIDDEN = 32
# Different from TEXT_ENCODER_HIDDEN: from_single_file tells the two encoders apart by their hidden size.
TEXT_ENCODER_2_HIDDEN = 48
TEXT_ENCODER_2_PROJECTION = 32
ADDITION_TIME_EMBED_DIM = 8
UNET_LAYERS_PER_BLOCK = 2

# Words that tokenize as whole tokens; anything else falls back to byte-level pieces.
COMMON_WORDS = (
    "a an and of the in on with for to at by is",
    "photo portrait headshot person man woman face studio professional lighting light background",
    "business suit shirt smile smiling close up high quality detailed sharp focus natural outdoor office",
    "corporate linkedin casual formal black white grey gray blue red green warm soft style",
)

README = """# Tiny random SDXL (tests and demos only)

This model is randomly initialised. It has the architecture of Stable Diffusion XL (the real diffusers and
transformers classes) at a tiny size, but it was never trained: every image it produces is noise.
It exists so that loading, LoRA training and rendering can be tested offline in seconds, on a CPU.
Do not use it to make headshots.

- diffusers folder: this directory (`model_index.json` and one subfolder per component)
- single file: `{single_file}` (original SGM key layout; load it with `config=<this directory>`)
- seed: {seed}
"""


def write_tiny_model(directory: Path, seed: int = 0) -> Path:
    """Write the tiny random SDXL pipeline (folder, single file, README) into `directory`; return `directory`."""
    import torch
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        pipeline = build_tiny_pipeline(seed)
    pipeline.save_pretrained(directory, safe_serialization=True)
    save_file(original_state_dict(pipeline), directory / SINGLE_FILE_NAME)
    (directory / "README.md").write_text(README.format(single_file=SINGLE_FILE_NAME, seed=seed))
    return directory


def build_tiny_pipeline(seed: int = 0):
    """The tiny random `StableDiffusionXLPipeline`, in memory (float32, CPU). Reseeds torch's global RNG."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=UNET_LAYERS_PER_BLOCK,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        transformer_layers_per_block=(1, 2),
        use_linear_projection=True,
        cross_attention_dim=TEXT_ENCODER_HIDDEN + TEXT_ENCODER_2_HIDDEN,
        addition_embed_type="text_time",
        addition_time_embed_dim=ADDITION_TIME_EMBED_DIM,
        # SDXL's pooled text embedding plus six micro-conditioning numbers (sizes and crop).
        projection_class_embeddings_input_dim=6 * ADDITION_TIME_EMBED_DIM + TEXT_ENCODER_2_PROJECTION,
        norm_num_groups=1,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        block_out_channels=(32, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        sample_size=64,
    )
    vocab, merges = clip_vocabulary()
    text_config = {
        "vocab_size": len(vocab),
        "intermediate_size": 37,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "layer_norm_eps": 1e-5,
        "hidden_act": "gelu",
        "pad_token_id": vocab["<|endoftext|>"],
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": vocab["<|endoftext|>"],
    }
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(hidden_size=TEXT_ENCODER_HIDDEN, projection_dim=32, **text_config))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(
        CLIPTextConfig(hidden_size=TEXT_ENCODER_2_HIDDEN, projection_dim=TEXT_ENCODER_2_PROJECTION, **text_config)
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    return StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer=clip_tokenizer(vocab, merges),
        tokenizer_2=clip_tokenizer(vocab, merges),
        unet=unet.eval(),
        scheduler=scheduler,
    )


def clip_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=77)


def clip_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary built offline: every byte (alone and word-final), COMMON_WORDS, the special tokens."""
    symbols = list(byte_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    ranks: dict[tuple[str, str], int] = {}
    for word in [word for line in COMMON_WORDS for word in line.split()]:
        # Merge the word as the tokenizer will (earlier merges first), then add merges joining what is left,
        # so that every common word ends up a single token.
        pieces = apply_merges([*word[:-1], word[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            ranks[(pieces[0], pieces[1])] = len(ranks)
            tokens.append(pieces[0] + pieces[1])
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return vocab, list(ranks)


def apply_merges(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: repeatedly join the adjacent pair with the lowest merge rank."""
    while len(pieces) > 1:
        pairs = [(ranks.get(pair, len(ranks)), index) for index, pair in enumerate(itertools.pairwise(pieces))]
        rank, index = min(pairs)
        if rank == len(ranks):
            break
        pieces = [*pieces[:index], pieces[index] + pieces[index + 1], *pieces[index + 2 :]]
    return pieces


def byte_to_unicode() -> dict[int, str]:
    """The byte -> printable character table of byte-level BPE (GPT-2, CLIP)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return dict(sorted(table.items()))


# --- diffusers -> original (SGM) key layout ---------------------------------------------------------------


def original_state_dict(pipeline) -> dict:
    """The pipeline's weights as one state dict in the original SDXL single-file layout."""
    layers_per_block, up_block_types = pipeline.unet.config.layers_per_block, pipeline.unet.config.up_block_types
    vae_blocks = len(pipeline.vae.config.up_block_types)
    state: dict = {}
    for key, value in pipeline.unet.state_dict().items():
        state["model.diffusion_model." + unet_key(key, layers_per_block, up_block_types)] = value
    for key, value in pipeline.vae.state_dict().items():
        state["first_stage_model." + vae_key(key, vae_blocks)] = vae_value(key, value)
    for key, value in pipeline.text_encoder.state_dict().items():
        if not key.endswith("position_ids"):
            state["conditioner.embedders.0.transformer.text_model." + key.removeprefix("text_model.")] = value
    state.update(open_clip_state_dict(pipeline.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    return {key: value.detach().contiguous() for key, value in state.items()}


VAE_NAMES = {
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_norm_out": "decoder.norm_out",
}
VAE_ATTENTION_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}


def vae_key(key: str, block_count: int) -> str:
    """One AutoencoderKL key in the original `first_stage_model.` layout (without the prefix)."""
    module, _, parameter = key.rpartition(".")
    if module in VAE_NAMES:
        return f"{VAE_NAMES[module]}.{parameter}"
    parts = key.split(".")
    coder, block_kind = parts[0], parts[1]
    if block_kind not in ("mid_block", "down_blocks", "up_blocks"):
        return key  # conv_in, conv_out, quant_conv and post_quant_conv keep their names
    if block_kind == "mid_block":
        kind, index, rest = parts[2], int(parts[3]), parts[4:]
        if kind == "resnets":
            return dotted(coder, "mid", f"block_{index + 1}", *vae_resnet_rest(rest))
        name = rest[0]
        tail = rest[2:] if name == "to_out" else rest[1:]  # diffusers' to_out.0 is the original proj_out
        return dotted(coder, "mid", "attn_1", VAE_ATTENTION_NAMES[name], *tail)
    block, kind, rest = int(parts[2]), parts[3], parts[4:]
    if block_kind == "down_blocks":
        if kind == "downsamplers":
            return dotted(coder, "down", block, "downsample", *rest[1:])
        return dotted(coder, "down", block, "block", *vae_resnet_rest(rest))
    # The original decoder numbers its up blocks from the lowest resolution upwards, diffusers the other way.
    original_block = block_count - 1 - block
    if kind == "upsamplers":
        return dotted(coder, "up", original_block, "upsample", *rest[1:])
    return dotted(coder, "up", original_block, "block", *vae_resnet_rest(rest))


def vae_resnet_rest(rest: list[str]) -> list[str]:
    return ["nin_shortcut" if rest[0] == "conv_shortcut" else rest[0], *rest[1:]]


def vae_value(key: str, value):
    """The original VAE's attention projections are 1x1 convolutions, diffusers' are linear layers."""
    if ".mid_block.attentions." in key and key.endswith(".weight") and value.dim() == 2:
        return value[:, :, None, None]
    return value


OPEN_CLIP_NAMES = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
OPEN_CLIP_LAYER_NAMES = {
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
    "self_attn.out_proj": "attn.out_proj",
}


def open_clip_state_dict(state: dict, prefix: str) -> dict:
    """CLIPTextModelWithProjection weights in OpenCLIP's layout (fused q/k/v, transposed text projection)."""
    import torch

    converted = {}
    fused: dict[str, dict[str, object]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            converted[prefix + "text_projection"] = value.T
        elif key in OPEN_CLIP_NAMES:
            converted[prefix + OPEN_CLIP_NAMES[key]] = value
        else:
            layer_path = key.removeprefix("text_model.encoder.layers.")
            layer, _, rest = layer_path.partition(".")
            module, _, parameter = rest.rpartition(".")
            block = f"{prefix}transformer.resblocks.{layer}."
            if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                fused.setdefault(f"{block}attn.in_proj_{parameter}", {})[module.removeprefix("self_attn.")[0]] = value
            else:
                converted[block + OPEN_CLIP_LAYER_NAMES[module] + "." + parameter] = value
    for key, parts in fused.items():
        converted[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return converted
