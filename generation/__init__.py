"""Generation: SDXL loading, identity LoRA training, style presets and the pack pipeline."""
