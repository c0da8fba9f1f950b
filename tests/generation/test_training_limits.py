"""What a training run may cost: it stops before its first step when asked, keeps two checkpoints, and takes any
seed in 0..2^63-1 (the range a job's seed may have), on the tiny model."""

from PIL import Image

from generation.lora_files import KEEP_CHECKPOINTS
from generation.models import load_model
from generation.render import seed_for
from generation.training import TrainingConfig, train_identity_lora
from tests.conftest import FACES

CONFIG = TrainingConfig(steps=6, rank=4, alpha=4, learning_rate=1e-3, resolution=64, checkpoint_every=1)


def _photos() -> list[Image.Image]:
    return [Image.open(FACES / name).convert("RGB") for name in ("img1.jpg", "img2.jpg")]


def test_a_stop_before_the_first_step_trains_nothing(tiny_model, tmp_path):
    asked = []

    def stop_after_encoding() -> bool:
        asked.append(len(asked))
        return len(asked) > 1  # "no" before the photos are encoded, "yes" before the first step

    result = train_identity_lora(
        load_model(tiny_model).pipeline, _photos(), tmp_path, CONFIG, stop_requested=stop_after_encoding
    )
    assert result.lora_path is None and result.steps_done == 0 and result.losses == []
    assert asked == [0, 1]
    assert list((tmp_path / "checkpoints").iterdir()) == []

    at_once = train_identity_lora(
        load_model(tiny_model).pipeline, _photos(), tmp_path / "b", CONFIG, stop_requested=lambda: True
    )
    assert at_once.steps_done == 0 and not (tmp_path / "b").exists()  # nothing encoded, nothing written


def test_only_the_latest_checkpoints_are_kept_and_any_seed_works(tiny_model, tmp_path):
    config = TrainingConfig(**{**CONFIG.__dict__, "seed": 2**63 - 1})
    result = train_identity_lora(load_model(tiny_model).pipeline, _photos(), tmp_path, config)
    assert result.steps_done == 6 and result.lora_path.exists()
    assert KEEP_CHECKPOINTS == 2
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["step-000005", "step-000006"]
    assert seed_for(2**63 - 1, 4, 99) < 2**63 and seed_for(7, 1, 2) == 1009
