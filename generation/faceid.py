"""Zero-shot identity: IP-Adapter FaceID for SDXL, conditioned on the person's ArcFace face embedding.

Three identity methods make a pack (`IdentityMethod.name`):

- `lora`: an identity LoRA trained on the accepted reference photos (generation/training.py); minutes on a
  GPU before the first image, the best likeness.
- `faceid`: no training. IP-Adapter FaceID (Ye et al., h94/IP-Adapter-FaceID, `ip-adapter-faceid_sdxl.bin`)
  turns one 512-number ArcFace embedding of the face into 4 extra cross-attention tokens; the first image
  comes in seconds. Loaded through diffusers' own `load_ip_adapter(..., image_encoder_folder=None)`: the
  weights hold `image_proj` (diffusers' IPAdapterFaceIDImageProjection: Linear 512 -> 1024, GELU,
  Linear 1024 -> 4 x 2048, LayerNorm) and `ip_adapter` (to_k_ip / to_v_ip of every cross-attention, plus the
  LoRA the FaceID checkpoints carry, which diffusers loads as the adapter `faceid_0`). The embedding goes
  to the pipeline as `ip_adapter_image_embeds`, with zeros as the unconditional half of guidance.
- `hybrid`: the identity LoRA and the adapter together, the adapter at a lower scale (0.5 by default).

The embedding is insightface's ArcFace (the encoder FaceID was trained with) of each accepted reference
photo, from the operator's insightface pack (HEADSHOT_INSIGHTFACE_PACK). The photos' L2-normalised
embeddings are averaged and the mean normalised again: FaceID was trained on one unit-length embedding per
image, and the mean direction of several photos keeps what they share (the person) and averages out what
differs (pose, expression, light), as template averaging does in face recognition. diffusers' alternative,
one embedding per photo as separate tokens, hands the model a token count it was not trained with.

Licences, which an operator must accept knowingly: insightface's released model packs (buffalo_l) are for
non-commercial research only; IP-Adapter FaceID's weights are released for research only (its model card
inherits insightface's restriction). The identity LoRA method needs neither.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from generation.lora_files import file_sha256

METHODS = ("lora", "faceid", "hybrid")
DEFAULT_ADAPTER_SCALE = {"faceid": 1.0, "hybrid": 0.5}
ADAPTER_SUFFIXES = (".safetensors", ".bin")
ADAPTER_NAME = "ip-adapter-faceid"
LICENCES = {
    "SDXL base": "CreativeML Open RAIL++-M (Stability AI's SDXL 1.0 weights; use restrictions apply)",
    "identity LoRA": "yours: trained here from the person's photos, with their consent",
    "IP-Adapter FaceID (h94/IP-Adapter-FaceID)": "research purposes only, not for commercial use (its model card)",
    "insightface model packs (buffalo_l, antelopev2)": "non-commercial research purposes only",
    "dlib 5-point landmarks and ResNet face descriptor": "not restricted (the dlib-models release notes)",
    "dlib 68-point landmarks (optional)": "its training data (iBUG 300-W) excludes commercial use",
    "tiny random models (`headshot models tiny`)": "this project's own, Apache-2.0; they recognise and draw nothing",
}
NEEDS_ADAPTER = (
    "IP-Adapter FaceID weights for SDXL: pass --ip-adapter PATH or set HEADSHOT_IP_ADAPTER to "
    "ip-adapter-faceid_sdxl.bin (h94/IP-Adapter-FaceID, research use only) or to a folder holding it; "
    "`headshot models tiny DIR` writes a tiny random one in DIR/ip-adapter-faceid for trying things out"
)
NEEDS_PACK = (
    "an insightface model pack for the ArcFace embedding: set HEADSHOT_INSIGHTFACE_PACK to a folder of its "
    "ONNX files, e.g. buffalo_l (non-commercial research use only); `headshot models tiny DIR` writes a tiny "
    "random one in DIR/insightface"
)


class IdentityError(ValueError):
    """The identity method cannot run with what was given; the message names what is missing."""


@dataclass(frozen=True)
class IdentityMethod:
    """How the pack carries the person's identity, and the local files the adapter methods need."""

    name: str = "lora"
    ip_adapter: Path | None = None  # a FaceID weights file, or a folder holding exactly one
    insightface_pack: Path | None = None
    adapter_scale: float | None = None  # None: DEFAULT_ADAPTER_SCALE for the method

    def __post_init__(self):
        if self.name not in METHODS:
            raise IdentityError(f"unknown identity method {self.name!r}: use {', '.join(METHODS)}")
        if self.adapter_scale is not None and not 0 <= self.adapter_scale <= 2:
            raise IdentityError(f"the adapter scale must be between 0 and 2, not {self.adapter_scale}")

    @property
    def trains_lora(self) -> bool:
        return self.name in ("lora", "hybrid")

    @property
    def uses_adapter(self) -> bool:
        return self.name in ("faceid", "hybrid")

    @property
    def scale(self) -> float | None:
        if not self.uses_adapter:
            return None
        return self.adapter_scale if self.adapter_scale is not None else DEFAULT_ADAPTER_SCALE[self.name]

    def check(self) -> None:
        """Raise IdentityError naming each missing file the method needs (before any model is loaded)."""
        if not self.uses_adapter:
            return
        missing = []
        if self.ip_adapter is None:
            missing.append(NEEDS_ADAPTER)
        else:
            adapter_weights(self.ip_adapter)
        if self.insightface_pack is None:
            missing.append(NEEDS_PACK)
        elif not Path(self.insightface_pack).is_dir():
            missing.append(f"{NEEDS_PACK} ({self.insightface_pack} is not a folder)")
        if missing:
            raise IdentityError(f"identity method {self.name} needs " + "; and ".join(missing))


def adapter_weights(path: Path) -> Path:
    """The FaceID weights file at `path`: the file itself, or the only .safetensors/.bin in the folder."""
    path = Path(path).expanduser()
    if path.is_file():
        if path.suffix.lower() not in ADAPTER_SUFFIXES:
            raise IdentityError(f"{path} is not IP-Adapter weights: expected a .bin or .safetensors file")
        return path
    if not path.is_dir():
        raise IdentityError(f"IP-Adapter FaceID weights not found at {path}; expected {NEEDS_ADAPTER}")
    files = sorted(file for file in path.iterdir() if file.is_file() and file.suffix.lower() in ADAPTER_SUFFIXES)
    if len(files) != 1:
        found = ", ".join(file.name for file in files) or "no .bin or .safetensors file"
        raise IdentityError(f"expected exactly one IP-Adapter FaceID weights file in {path}; found {found}")
    return files[0]


@dataclass(frozen=True)
class FaceEmbedding:
    """The person's ArcFace embedding: the normalised mean of the accepted photos' embeddings."""

    vector: np.ndarray  # (512,), unit length
    photos: list[str]  # the photos it was made from
    skipped: list[dict] = field(default_factory=list)  # {"name", "reason"}: no face found by the encoder
    spread: float = 0.0  # mean cosine distance of the photos' embeddings to their mean

    def describe(self) -> dict:
        return {"photos": self.photos, "skipped": self.skipped, "spread": self.spread, "size": int(self.vector.size)}


def face_embedding(photos: Sequence[tuple[str, Image.Image]], encoder) -> FaceEmbedding:
    """Embed the largest face of each photo with `encoder` (an InsightFaceBackend) and average them."""
    vectors, used, skipped = [], [], []
    for name, image in photos:
        faces = encoder.detect(image)
        if not faces:
            skipped.append({"name": name, "reason": f"{encoder.name} found no face"})
            continue
        vector = np.asarray(encoder.embed(image, faces[0]), dtype=np.float64)
        vectors.append(vector / (np.linalg.norm(vector) + 1e-12))
        used.append(name)
    if not vectors:
        reasons = "; ".join(f"{item['name']}: {item['reason']}" for item in skipped) or "no photo given"
        raise IdentityError(f"no face embedding could be made for IP-Adapter FaceID ({reasons})")
    mean = np.mean(vectors, axis=0)
    mean /= np.linalg.norm(mean) + 1e-12
    spread = float(np.mean([1 - float(vector @ mean) for vector in vectors]))
    return FaceEmbedding(mean.astype(np.float32), used, skipped, round(spread, 4))


def face_encoder(pack_dir: Path):
    """The insightface backend whose ArcFace conditions the adapter; IdentityError if it cannot load."""
    from scoring.faces import FaceBackendError

    try:
        from scoring.insightface_backend import InsightFaceBackend

        return InsightFaceBackend(Path(pack_dir))
    except ImportError as error:
        raise IdentityError(
            f"the faceid and hybrid methods need insightface ({error}): "
            '`pip install -e ".[insightface]" && pip install --no-deps insightface==2.1`'
        ) from None
    except FaceBackendError as error:
        raise IdentityError(f"{NEEDS_PACK}: {error}") from None


def encoder_record(encoder) -> dict:
    """What identifies the conditioning encoder: its name and the SHA-256 of the ONNX files it ran."""
    detector, recogniser = encoder.model_files["detection"], encoder.model_files["recognition"]
    return {
        "name": "insightface ArcFace",
        "pack": str(encoder.pack_dir.resolve()),
        "recogniser": {"file": recogniser.name, "sha256": file_sha256(recogniser)},
        "detector": {"file": detector.name, "sha256": file_sha256(detector)},
    }


class FaceAdapter:
    """IP-Adapter FaceID attached to an SDXL pipeline, conditioned on one person's face embedding."""

    def __init__(self, method: IdentityMethod, embedding: FaceEmbedding, encoder: dict):
        method.check()
        self.method = method
        self.weights = adapter_weights(method.ip_adapter)
        self.sha256 = file_sha256(self.weights)
        self.embedding = embedding
        self.encoder = encoder

    def attach(self, pipeline) -> None:
        """Load the adapter into `pipeline` at the method's scale, keeping any LoRA already active there."""
        from diffusers.utils import logging

        active = list(pipeline.get_active_adapters()) if getattr(pipeline.unet, "peft_config", None) else []
        verbosity = logging.get_verbosity()
        logging.set_verbosity_error()  # "image_encoder is not loaded": expected, FaceID takes embeddings
        try:
            pipeline.load_ip_adapter(
                str(self.weights.parent),
                subfolder="",
                weight_name=self.weights.name,
                image_encoder_folder=None,
                local_files_only=True,
            )
        except (ValueError, KeyError, RuntimeError, OSError) as error:
            if "out of memory" in str(error):
                raise
            raise IdentityError(
                f"{self.weights} is not an IP-Adapter FaceID for this SDXL model ({type(error).__name__}: {error}); "
                f"expected {NEEDS_ADAPTER}"
            ) from None
        finally:
            logging.set_verbosity(verbosity)
        self._check_projection(pipeline.unet.encoder_hid_proj.image_projection_layers[0])
        pipeline.set_ip_adapter_scale(self.method.scale)
        loaded = getattr(pipeline.unet, "peft_config", {})
        adapters = [*active, *(name for name in loaded if name.startswith("faceid_") and name not in active)]
        if adapters:
            pipeline.set_adapters(adapters, adapter_weights=[1.0] * len(adapters))

    def _check_projection(self, projection) -> None:
        """The weights are FaceID's (one face embedding in), not another IP-Adapter's (CLIP image features in),
        and take an embedding of the encoder's size."""
        kind = type(projection).__name__
        if kind != "IPAdapterFaceIDImageProjection":
            raise IdentityError(
                f"{self.weights} is an IP-Adapter of another kind ({kind}, which takes CLIP image features); "
                f"expected {NEEDS_ADAPTER}"
            )
        size = projection.ff.net[0].proj.in_features
        if size != self.embedding.vector.size:
            raise IdentityError(
                f"{self.weights} takes {size}-number face embeddings, but the insightface pack's recogniser gives "
                f"{self.embedding.vector.size}: use the ArcFace pack FaceID was trained with (buffalo_l)"
            )

    def inputs(self, pipeline, batch: int, guidance_scale: float) -> dict:
        """The pipeline's `ip_adapter_image_embeds` for `batch` prompts: zeros, then the embedding, under guidance."""
        import torch

        vector = torch.from_numpy(self.embedding.vector).reshape(1, 1, -1).repeat(batch, 1, 1)
        if guidance_scale > 1:
            vector = torch.cat([torch.zeros_like(vector), vector])
        return {"ip_adapter_image_embeds": [vector.to(pipeline._execution_device, pipeline.unet.dtype)]}

    def describe(self) -> dict:
        return {
            "file": str(self.weights),
            "sha256": self.sha256,
            "scale": self.method.scale,
            "face_encoder": self.encoder,
            "embedding": self.embedding.describe(),
        }


def prepare_adapter(method: IdentityMethod, photos: Sequence[tuple[str, Image.Image]], encoder=None) -> FaceAdapter:
    """Check the method's files, embed the accepted photos with the insightface pack (or the `encoder` already
    loaded from it), and return the adapter."""
    method.check()
    encoder = encoder or face_encoder(method.insightface_pack)
    return FaceAdapter(method, face_embedding(photos, encoder), encoder_record(encoder))


class AdapterGenerator:
    """A `Generator` (generation/generator.py) for `faceid` (SDXL and IP-Adapter FaceID, no training) and
    `hybrid` (the identity LoRA in `lora_dir` as well). References are embedded when it renders, by `encoder`
    (an InsightFaceBackend already loaded) or by the method's insightface pack."""

    def __init__(self, model, method: IdentityMethod, lora_dir: Path | None, training, encoder=None):
        from generation.generator import LoraGenerator

        _as_pack_error(method.check)
        self.encoder = encoder
        self.model = model
        self.method = method.name
        self.identity = method
        self.lora = LoraGenerator(model, lora_dir, training.subject) if method.trains_lora else None
        self.subject = self.lora.subject if self.lora else f"a {training.class_word}"

    def render(self, references, styles, settings, progress=None):
        from generation.generator import ModelPart, Rendering, render_styles
        from generation.lora_files import use_saved_lora

        named = [(f"reference photo {number}", image) for number, image in enumerate(references, start=1)]
        adapter = _as_pack_error(prepare_adapter, self.identity, named, self.encoder)
        pipeline = self.model.pipeline
        if self.lora is not None:
            use_saved_lora(pipeline, self.lora.lora_dir)
        _as_pack_error(adapter.attach, pipeline)
        conditioning = functools.partial(adapter.inputs, pipeline)  # (batch, guidance scale) -> pipeline inputs
        images = render_styles(pipeline, styles, self.subject, settings, progress, conditioning)
        for image in images:
            image.parameters["ip_adapter_scale"] = self.identity.scale
        encoder = adapter.encoder
        parts = (
            ModelPart("sdxl-base", str(self.model.source), self.model.sha256),
            *((self.lora.lora,) if self.lora else ()),
            ModelPart(ADAPTER_NAME, str(adapter.weights), adapter.sha256),
            ModelPart(
                "face-encoder", encoder["pack"] + "/" + encoder["recogniser"]["file"], encoder["recogniser"]["sha256"]
            ),
            ModelPart(
                "face-detector", encoder["pack"] + "/" + encoder["detector"]["file"], encoder["detector"]["sha256"]
            ),
        )
        with_lora = "an identity LoRA and " if self.lora else ""
        description = f"Stable Diffusion XL ({self.model.source.name}) with {with_lora}IP-Adapter FaceID"
        return Rendering(images, self.method, description, parts, {"adapter": adapter.describe()})


def identity_generator(model, method: IdentityMethod, lora_dir: Path | None, training, encoder=None):
    """The `Generator` for the method: `LoraGenerator` for lora, `AdapterGenerator` for faceid and hybrid."""
    from generation.generator import LoraGenerator

    if method.name == "lora":
        return LoraGenerator(model, lora_dir, training.subject)
    return AdapterGenerator(model, method, lora_dir, training, encoder)


def _as_pack_error(function, *arguments):
    """Call `function`; an IdentityError becomes the PackError a pack (or a job's stage) reports."""
    from generation.pack import PackError

    try:
        return function(*arguments)
    except IdentityError as exc:
        raise PackError(str(exc)) from None


def likeness_backend(backend, method: IdentityMethod):
    """The face backend that scores likeness: never the encoder that conditioned generation, whose own
    score would flatter the result. With the adapter (insightface's ArcFace), dlib scores."""
    if method.uses_adapter and backend.name == "insightface":
        from scoring.faces import DlibBackend

        return DlibBackend()
    return backend


def likeness_note(method: IdentityMethod, scorer_name: str) -> dict:
    """What the report says about how likeness was measured, and why."""
    note = {"encoder": scorer_name, "conditioning_encoder": None}
    if method.uses_adapter:
        note["conditioning_encoder"] = "insightface ArcFace"
        note["note"] = (
            f"likeness is measured with {scorer_name}, not with the ArcFace embedding that conditioned the "
            "adapter: a score from the conditioning encoder would flatter the likeness"
        )
    return note
