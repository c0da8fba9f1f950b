import os
import shutil
from pathlib import Path

import pytest

# Nothing in these tests may reach a model hub: set before anything imports huggingface_hub.
os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.fixture(scope="session", autouse=True)
def offline_hub():
    """Keep the hub offline even if huggingface_hub was imported before this conftest set the variable."""
    import huggingface_hub.constants

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        yield


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, offline_hub) -> Path:
    """The tiny random SDXL model, built once: a diffusers folder holding also tiny-sdxl.safetensors."""
    from generation.tiny import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-sdxl") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_config(tiny_model, tmp_path_factory) -> Path:
    """The tiny model's diffusers folder without any weights: loading the single file with it as `config`
    proves every weight comes from the single file."""
    config = tmp_path_factory.mktemp("tiny-sdxl-config") / "config"
    shutil.copytree(tiny_model, config, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return config
