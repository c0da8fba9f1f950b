"""Style presets: named prompt, negative prompt and parameters, from `presets.toml` and the user's own file."""

import tomllib
from dataclasses import dataclass
from pathlib import Path

BUILT_IN = Path(__file__).with_name("presets.toml")


class PresetError(ValueError):
    """A preset file or name is unusable; the message says what to fix."""


@dataclass(frozen=True)
class StylePreset:
    name: str
    description: str
    prompt: str  # contains "{subject}"
    negative_prompt: str
    guidance_scale: float

    def render(self, subject: str) -> str:
        return self.prompt.format(subject=subject)


def load_presets(user_file: Path | None = None) -> dict[str, StylePreset]:
    """The built-in presets, overridden and extended by `user_file` (same TOML shape)."""
    presets = _read(BUILT_IN)
    if user_file is not None:
        presets.update(_read(Path(user_file)))
    return presets


def select_presets(presets: dict[str, StylePreset], names: list[str] | None) -> list[StylePreset]:
    if not names:
        return list(presets.values())
    unknown = [name for name in names if name not in presets]
    if unknown:
        raise PresetError(f"unknown style {', '.join(unknown)}; available: {', '.join(presets)}")
    return [presets[name] for name in names]


def _read(path: Path) -> dict[str, StylePreset]:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise PresetError(f"cannot read the presets file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"the presets file {path} is not valid TOML: {exc}") from None
    presets = {}
    for name, table in data.items():
        if not isinstance(table, dict) or "prompt" not in table:
            raise PresetError(f"{path}: preset [{name}] needs at least a prompt")
        if "{subject}" not in table["prompt"]:
            raise PresetError(f"{path}: the prompt of [{name}] must contain {{subject}} (where the person goes)")
        try:
            presets[name] = StylePreset(
                name=name,
                description=str(table.get("description", name)),
                prompt=str(table["prompt"]),
                negative_prompt=str(table.get("negative_prompt", "")),
                guidance_scale=float(table.get("guidance_scale", 6.0)),
            )
        except (TypeError, ValueError):
            raise PresetError(f"{path}: preset [{name}] has a value of the wrong type") from None
    return presets
