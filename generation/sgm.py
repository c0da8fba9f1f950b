"""diffusers -> original (SGM) names of SDXL UNet modules, as in the single-file checkpoint and kohya's LoRAs.

`unet_key("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight", 2, up_block_types)` is
`"input_blocks.4.1.transformer_blocks.0.attn1.to_q.weight"`: the inverse of the mapping diffusers applies in
`from_single_file` (diffusers/loaders/single_file_utils.py). `generation.tiny` writes its single file with it
and `generation.kohya` names LoRA modules with it.
"""

RESNET_NAMES = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
UNET_NAMES = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def unet_key(key: str, layers_per_block: int, up_block_types: tuple[str, ...]) -> str:
    """One UNet2DConditionModel key in the original `model.diffusion_model.` layout (without the prefix)."""
    module, _, parameter = key.rpartition(".")
    if module in UNET_NAMES:
        return f"{UNET_NAMES[module]}.{parameter}"
    parts = key.split(".")
    per_block = layers_per_block + 1
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), parts[3:]
        if kind == "resnets":
            return dotted("middle_block", 2 * index, *resnet_rest(rest))
        return dotted("middle_block", 1, *rest)
    block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
    if parts[0] == "down_blocks":
        if kind == "downsamplers":
            return dotted("input_blocks", 1 + block * per_block + layers_per_block, 0, "op", *rest[1:])
        position = 1 + block * per_block + index
        if kind == "resnets":
            return dotted("input_blocks", position, 0, *resnet_rest(rest))
        return dotted("input_blocks", position, 1, *rest)
    if parts[0] == "up_blocks":
        if kind == "upsamplers":
            # The upsampler follows the block's last resnet, and its attention where the block has one.
            slot = 2 if "CrossAttn" in up_block_types[block] else 1
            return dotted("output_blocks", block * per_block + layers_per_block, slot, *rest)
        position = block * per_block + index
        if kind == "resnets":
            return dotted("output_blocks", position, 0, *resnet_rest(rest))
        return dotted("output_blocks", position, 1, *rest)
    raise ValueError(f"no original SDXL name for UNet parameter {key!r}")


def resnet_rest(rest: list[str]) -> list[str]:
    return [*RESNET_NAMES.get(rest[0], rest[0]).split("."), *rest[1:]]


def dotted(*parts: object) -> str:
    return ".".join(str(part) for part in parts)
