"""Loading SDXL from local files: a diffusers folder or a single checkpoint, on the chosen device and dtype.

Nothing here downloads: every load is `local_files_only=True`, and a single-file checkpoint needs a local
diffusers config folder (`config=`) for its component configs, tokenizers and scheduler.

    model = load_model(Path("sdxl-base"), memory=MemoryOptions(vae_tiling=True))
    model.pipeline(prompt, ...)   # a diffusers StableDiffusionXLPipeline
    model.sha256                  # identifies the weights in a generated image's provenance

Memory options: `vae_tiling` and `vae_slicing` work on every device; `cpu_offload` (keep each component in
main memory until it runs) needs CUDA, and asking for it on another device raises ModelError rather than
being silently ignored.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

SDXL_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")
WEIGHTED_COMPONENTS = {
    "unet": "diffusion_pytorch_model.safetensors",
    "vae": "diffusion_pytorch_model.safetensors",
    "text_encoder": "model.safetensors",
    "text_encoder_2": "model.safetensors",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
# Key prefixes of the original (SGM) SDXL single-file layout, and what each holds.
SINGLE_FILE_PARTS = {
    "model.diffusion_model.": "UNet",
    "first_stage_model.": "VAE",
    "conditioner.embedders.0.transformer.": "CLIP ViT-L text encoder",
    "conditioner.embedders.1.model.": "OpenCLIP ViT-bigG text encoder",
}
DTYPE_NAMES = {
    "float32": "float32",
    "fp32": "float32",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
}
HASH_CACHE_FILE = "model-hashes.json"
# SDXL's UNet has about 2.6 billion parameters; a UNet under this many is a test model (`headshot models tiny`)
TEST_MODEL_UNET_PARAMETERS = 50_000_000
HASH_CHUNK = 8 * 1024 * 1024


class ModelError(RuntimeError):
    """A model cannot be found, read or placed as asked; the message says what was expected and what to do."""


@dataclass(frozen=True)
class MemoryOptions:
    """Trade speed for memory. `cpu_offload` needs CUDA."""

    vae_tiling: bool = False
    vae_slicing: bool = False
    cpu_offload: bool = False


@dataclass
class LoadedModel:
    """A ready pipeline and what identifies it. `applied` lists the memory options that took effect."""

    pipeline: Any
    sha256: str
    source: Path
    device: str
    dtype_name: str
    applied: tuple[str, ...] = ()

    @property
    def is_test_model(self) -> bool:
        """A UNet far too small to draw a face (the tiny random model): its images are noise."""
        return sum(p.numel() for p in self.pipeline.unet.parameters()) < TEST_MODEL_UNET_PARAMETERS


def choose_device(device: str | None = None, dtype: str | None = None) -> tuple[str, "torch.dtype"]:
    """The device and dtype to run on. "auto" (or None) picks CUDA when present (bfloat16 where supported,
    else float16), otherwise the CPU in float32. Explicit choices are checked against this machine."""
    import torch

    requested = (device or "auto").strip().lower()
    cuda = torch.cuda.is_available()
    if requested == "auto":
        requested = "cuda" if cuda else "cpu"
    if requested.startswith("cuda"):
        index = requested.removeprefix("cuda").removeprefix(":")
        if requested != "cuda" and not (requested.startswith("cuda:") and index.isdigit()):
            raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")
        if not cuda:
            raise ModelError(f"device {device!r} was asked for but no CUDA GPU is available here; use the cpu device")
        if index and int(index) >= torch.cuda.device_count():
            raise ModelError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    elif requested != "cpu":
        raise ModelError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")

    on_cuda = requested.startswith("cuda")
    requested_dtype = (dtype or "auto").strip().lower()
    if requested_dtype == "auto" and on_cuda:
        name = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    elif requested_dtype == "auto":
        name = "float32"
    elif requested_dtype in DTYPE_NAMES:
        name = DTYPE_NAMES[requested_dtype]
    else:
        raise ModelError(f"unknown dtype {dtype!r}: use auto, float32, float16 or bfloat16")
    if name == "float16" and not on_cuda:
        raise ModelError("float16 is not supported on the CPU: use float32 (or bfloat16)")
    if name == "bfloat16" and on_cuda and not torch.cuda.is_bf16_supported():
        raise ModelError(f"this GPU does not support bfloat16: use float16 on {requested}")
    return requested, getattr(torch, name)


def model_hash(path: Path, cache_dir: Path | None = None) -> str:
    """SHA-256 of a model's weights: a single file's bytes, or for a folder its *.safetensors/*.bin files (those
    of the components of a diffusers folder; relative path, size and bytes, in sorted path order). With
    `cache_dir`, the result is remembered per resolved path and recomputed only when a file's size or
    modification time changes."""
    path = Path(path).expanduser().resolve()
    files = weight_files(path)
    fingerprint = [[relative_name(path, file), *file_signature(file)] for file in files]
    cache_file = Path(cache_dir) / HASH_CACHE_FILE if cache_dir is not None else None
    cache = read_hash_cache(cache_file)
    cached = cache.get(str(path))
    if cached and cached.get("files") == fingerprint:
        return cached["sha256"]

    digest = hashlib.sha256()
    for file in files:
        if path.is_dir():
            digest.update(relative_name(path, file).encode() + b"\0")
            digest.update(file.stat().st_size.to_bytes(8, "little"))
        with file.open("rb") as stream:
            while chunk := stream.read(HASH_CHUNK):
                digest.update(chunk)
    sha256 = digest.hexdigest()
    if cache_file is not None:
        cache[str(path)] = {"files": fingerprint, "sha256": sha256}
        write_hash_cache(cache_file, cache)
    return sha256


def load_model(
    path: Path,
    *,
    config: Path | None = None,
    device: str | None = None,
    dtype: str | None = None,
    memory: MemoryOptions | None = None,
    cache_dir: Path | None = None,
) -> LoadedModel:
    """Load SDXL from a diffusers folder (with model_index.json) or a single .safetensors/.ckpt checkpoint.

    A single file needs `config`, a local diffusers folder giving the component configs, tokenizers and
    scheduler (its weights, if any, are not used). Nothing is downloaded."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(
            f"model not found: {path}. Pass an SDXL diffusers folder (with model_index.json) "
            "or a single .safetensors/.ckpt checkpoint."
        )
    device_name, torch_dtype = choose_device(device, dtype)
    memory = memory or MemoryOptions()
    if memory.cpu_offload and not device_name.startswith("cuda"):
        raise ModelError(
            f"CPU offload needs a CUDA device, but the model runs on {device_name}, where it already lives in "
            "main memory: turn CPU offload off (or run on a GPU)"
        )

    if path.is_dir():
        pipeline = load_folder(path, torch_dtype)
    elif path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        pipeline = load_single_file(path, config, torch_dtype)
    else:
        raise ModelError(
            f"{path} is neither a diffusers folder nor a single-file checkpoint: expected a folder with "
            f"model_index.json or a file ending in {' or '.join(SINGLE_FILE_SUFFIXES)}"
        )

    applied = []
    if memory.cpu_offload:
        pipeline.enable_model_cpu_offload(device=device_name)
        applied.append("cpu_offload")
    else:
        pipeline.to(device_name)
    if memory.vae_tiling:
        pipeline.vae.enable_tiling()
        applied.append("vae_tiling")
    if memory.vae_slicing:
        pipeline.vae.enable_slicing()
        applied.append("vae_slicing")
    return LoadedModel(
        pipeline=pipeline,
        sha256=model_hash(path, cache_dir),
        source=path.resolve(),
        device=device_name,
        dtype_name=str(torch_dtype).removeprefix("torch."),
        applied=tuple(applied),
    )


def load_folder(path: Path, torch_dtype: "torch.dtype"):
    from diffusers import StableDiffusionXLPipeline

    variant = check_diffusers_folder(path)
    try:
        return StableDiffusionXLPipeline.from_pretrained(
            path, dtype=torch_dtype, variant=variant, local_files_only=True
        )
    except Exception as error:
        raise ModelError(f"could not load the diffusers folder {path}: {type(error).__name__}: {error}") from error


def load_single_file(path: Path, config: Path | None, torch_dtype: "torch.dtype"):
    from diffusers import StableDiffusionXLPipeline

    if config is None:
        raise ModelError(
            f"{path.name} is a single-file checkpoint, which needs a local diffusers config folder for its "
            "component configs, tokenizers and scheduler: pass --config <folder> or set HEADSHOT_SDXL_CONFIG "
            "(any SDXL diffusers folder works; its weights are not needed)"
        )
    config = Path(config).expanduser()
    if not (config / "model_index.json").is_file():
        raise ModelError(
            f"the config folder {config} is not a diffusers folder: expected model_index.json, found {listing(config)}"
        )
    if path.suffix.lower() == ".safetensors":
        check_single_file(path)
    try:
        return StableDiffusionXLPipeline.from_single_file(
            str(path), config=str(config), dtype=torch_dtype, local_files_only=True
        )
    except Exception as error:
        raise ModelError(
            f"could not load the checkpoint {path} with the config folder {config}: {type(error).__name__}: {error}"
        ) from error


def check_diffusers_folder(path: Path) -> str | None:
    """Raise ModelError unless `path` holds every SDXL component; return the weights variant to load."""
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise ModelError(
            f"{path} is not a diffusers folder: expected model_index.json, found {listing(path)}. "
            "For a single-file checkpoint, pass the .safetensors file itself."
        )
    try:
        index = json.loads(index_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{index_file} is not readable JSON: {error}") from error
    named = [name for name in SDXL_COMPONENTS if isinstance(index.get(name), list) and index[name][0] is not None]
    missing = [name for name in SDXL_COMPONENTS if name not in named]
    if missing:
        raise ModelError(
            f"{path} is not an SDXL text-to-image pipeline: model_index.json names no {', '.join(missing)} "
            f"(expected {', '.join(SDXL_COMPONENTS)})"
        )
    variant = None
    for name in SDXL_COMPONENTS:
        folder = path / name
        if not folder.is_dir():
            raise ModelError(f"{path} is incomplete: expected the folder {name}/, found {listing(path)}")
        if name not in WEIGHTED_COMPONENTS:
            continue
        weights = sorted(file.name for file in folder.iterdir() if file.name.endswith(WEIGHT_SUFFIXES))
        if not weights:
            raise ModelError(
                f"{path} is incomplete: {name}/ has no weights (expected {WEIGHTED_COMPONENTS[name]}), "
                f"found {listing(folder)}"
            )
        if all(".fp16." in weight for weight in weights):
            variant = "fp16"
    return variant


def check_single_file(path: Path) -> None:
    """Raise ModelError unless `path` is a readable safetensors file with every part of an SDXL checkpoint."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as checkpoint:
            keys = list(checkpoint.keys())
    except Exception as error:
        raise ModelError(
            f"{path} is not a readable safetensors file ({error}): the download may be incomplete or corrupt"
        ) from error
    missing = [part for prefix, part in SINGLE_FILE_PARTS.items() if not any(key.startswith(prefix) for key in keys)]
    if missing:
        found = sorted({".".join(key.split(".")[:2]) for key in keys})[:8]
        raise ModelError(
            f"{path} is not a complete SDXL checkpoint: no {', '.join(missing)} weights "
            f"(expected keys starting with {', '.join(SINGLE_FILE_PARTS)}; found {', '.join(found) or 'no keys'})"
        )


def weight_files(path: Path) -> list[Path]:
    """A single file; or a folder's weight files: for a diffusers folder (model_index.json), those of its
    weighted components only, so that a single-file copy or adapters kept beside them are not counted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise ModelError(f"model not found: {path}")
    roots = [path / name for name in WEIGHTED_COMPONENTS] if (path / "model_index.json").is_file() else [path]
    files = sorted(
        (file for root in roots for file in root.rglob("*") if file.is_file() and file.name.endswith(WEIGHT_SUFFIXES)),
        key=lambda file: relative_name(path, file),
    )
    if not files:
        raise ModelError(f"{path} holds no weight files (*.safetensors or *.bin) to hash")
    return files


def relative_name(root: Path, file: Path) -> str:
    return file.relative_to(root).as_posix() if root.is_dir() else file.name


def file_signature(file: Path) -> tuple[int, int]:
    stat = file.stat()
    return stat.st_size, stat.st_mtime_ns


def read_hash_cache(cache_file: Path | None) -> dict[str, Any]:
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # an unreadable cache is rebuilt, never trusted
    return cache if isinstance(cache, dict) else {}


def write_hash_cache(cache_file: Path, cache: dict[str, Any]) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(cache, indent=1, sort_keys=True))
    temporary.replace(cache_file)


def listing(folder: Path, limit: int = 10) -> str:
    if not folder.is_dir():
        return "no such folder"
    names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in folder.iterdir())
    if not names:
        return "an empty folder"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
