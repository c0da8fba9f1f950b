"""Disclosure: mark an image as AI-generated with signed C2PA Content Credentials and XMP."""

import base64
import hashlib
import io
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin

from provenance import fingerprint
from provenance.credentials import CredentialsError, SigningIdentity
from provenance.fingerprint import Fingerprints, fingerprint_for_registry
from provenance.images import MIME_TYPES, ImageInputError, ImageLimits, decode_image
from provenance.registry import RegistryEntry, SoftBindingRegistry
from provenance.watermarking import DEFAULT_WATERMARKER, Watermarker, watermarker

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PLUS_DATA_MINING_PROHIBITED = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED"
TRAINING_MINING_FORBIDDEN = {
    "c2pa.ai_training": {"use": "notAllowed"},
    "c2pa.ai_generative_training": {"use": "notAllowed"},
    "c2pa.data_mining": {"use": "notAllowed"},
}
_HEX = re.compile(r"^[0-9a-fA-F]{8,128}$")
# The EXIF a disclosed image keeps: nothing that describes a camera, a capture time or a place.
NEUTRAL_EXIF = frozenset(
    {
        "Exif.Image.ImageDescription",
        "Exif.Image.Artist",
        "Exif.Image.Copyright",
        "Exif.Image.XResolution",
        "Exif.Image.YResolution",
        "Exif.Image.ResolutionUnit",
    }
)
CAPTURE_XMP = ("Xmp.exif.", "Xmp.exifEX.", "Xmp.aux.", "Xmp.tiff.", "Xmp.photoshop.DateCreated", "Xmp.xmp.CreateDate")


@dataclass(frozen=True)
class Disclosure:
    """A disclosed image: the signed bytes and what its manifest and the registry say."""

    data: bytes
    mime_type: str
    manifest_label: str
    manifest: dict
    overhead_bytes: int  # XMP + manifest, over the (watermarked) pixels file
    payload: int
    watermarked: bool
    fingerprints: Fingerprints
    algorithm: str  # the watermark algorithm's name (provenance/watermarking.py)


def software_agent(generator: str | None) -> str:
    own = f"headshot {version('headshot')}"
    return f"{own} ({generator})" if generator else own


def parse_model_hashes(pairs: Sequence[str]) -> dict[str, str]:
    """Parse NAME=HEX pairs (a model's name and the SHA-256 of its weights); ValueError names a bad pair."""
    hashes: dict[str, str] = {}
    for pair in pairs:
        name, sep, digest = pair.partition("=")
        if not sep or not name.strip() or not _HEX.match(digest.strip()):
            raise ValueError(f"model hash {pair!r}: expected NAME=HEX, e.g. sdxl-base=3f2a...")
        hashes[name.strip()] = digest.strip().lower()
    return hashes


def disclose_image(
    data: bytes,
    identity: SigningIdentity,
    registry: SoftBindingRegistry,
    *,
    reference_hashes: Sequence[str] = (),
    generator: str | None = None,
    model_hashes: Mapping[str, str] | None = None,
    generation_parameters: Mapping[str, str] | None = None,
    limits: ImageLimits = ImageLimits(),
    watermark_algorithm: str = DEFAULT_WATERMARKER,
) -> Disclosure:
    """Watermark, fingerprint, sign and register an AI-generated image (JPEG, PNG or WebP).

    The output carries an invisible watermark, XMP and a signed C2PA manifest declaring it AI-generated
    (with both soft bindings declared); the registry records its payload, fingerprints and manifest so
    that a stripped copy is recognised. Reference photos become `inputTo` ingredients carrying only the
    SHA-256 of their original bytes (`reference_hashes`, hex) and a neutral title: no file name, no
    thumbnail, no pixels. The output keeps no camera capture data of its source (EXIF/XMP make, model,
    lens, capture dates, GPS, camera settings); its ICC profile stays. `model_hashes` and
    `generation_parameters` (such as the identity method) go into the parameters of the `c2pa.created` action.
    """
    import c2pa

    image = decode_image(data, limits)
    if getattr(image, "is_animated", False):
        raise ImageInputError("animated images cannot be disclosed; export a single frame", "unsupported")
    mime_type = MIME_TYPES[image.format]
    marker = watermarker(watermark_algorithm)
    payload = _new_payload(registry, marker)
    pixels_file, watermarked = _watermarked(image, data, payload, marker)
    fingerprints = fingerprint_for_registry(decode_image(pixels_file, limits))
    agent = software_agent(generator)

    builder = c2pa.Builder(
        _manifest(agent, model_hashes, generation_parameters, payload, watermarked, fingerprints, marker),
        context=_signing_context(),
    )
    for number, digest in enumerate(reference_hashes, start=1):
        ingredient = {"title": f"reference photo {number}", "relationship": "inputTo", "metadata": {"sha256": digest}}
        # An empty stream: the ingredient records the hash above and nothing of the photo itself.
        builder.add_ingredient(ingredient, "application/octet-stream", io.BytesIO(b""))

    signed = io.BytesIO()
    try:
        store = builder.sign(identity.c2pa_signer(), mime_type, io.BytesIO(_with_xmp(pixels_file, agent)), signed)
    except c2pa.C2paError as exc:
        # c2pa reports a time-stamp request that failed as a signature error (its HTTP resolver's message inside)
        if identity.timestamp_url and isinstance(exc, c2pa.C2paError.Signature):
            raise CredentialsError(
                f"the timestamp authority {identity.timestamp_url} could not be reached ({exc}); "
                "nothing was signed. Check HEADSHOT_TIMESTAMP_URL or the network"
            ) from None
        raise CredentialsError(f"signing failed: {exc}") from None
    output = signed.getvalue()
    manifest = c2pa.Reader(mime_type, io.BytesIO(output)).get_active_manifest()
    registry.add(
        RegistryEntry(
            payload=payload,
            manifest_label=manifest["label"],
            fingerprints=fingerprints,
            signed_sha256=hashlib.sha256(output).hexdigest(),
            mime_type=mime_type,
            manifest=manifest,
            watermarked=watermarked,
            algorithm=marker.name,
            manifest_store=store,
        )
    )
    return Disclosure(
        data=output,
        mime_type=mime_type,
        manifest_label=manifest["label"],
        manifest=manifest,
        overhead_bytes=len(output) - len(pixels_file),
        payload=payload,
        watermarked=watermarked,
        fingerprints=fingerprints,
        algorithm=marker.name,
    )


def _manifest(
    agent: str,
    model_hashes: Mapping[str, str] | None,
    generation_parameters: Mapping[str, str] | None,
    payload: int,
    watermarked: bool,
    fingerprints: Fingerprints,
    marker: Watermarker,
) -> dict:
    created = {
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": {"name": agent},
    }
    parameters = {**({"model_hashes": dict(model_hashes)} if model_hashes else {}), **(generation_parameters or {})}
    if parameters:
        created["parameters"] = parameters
    actions = [created]
    hashes = [*fingerprints.frame, fingerprints.face or 0]
    soft_bindings = [
        _soft_binding(fingerprint.ALGORITHM, b"".join(value.to_bytes(8, "big") for value in hashes)),
        *(_soft_binding(fingerprint.PDQ_ALGORITHM, value) for value in fingerprints.pdq),
    ]
    if watermarked:
        actions.append({"action": "c2pa.watermarked", "softwareAgent": {"name": agent}})
        soft_bindings.insert(0, _soft_binding(marker.algorithm, payload.to_bytes(marker.payload_bits // 8, "big")))
    return {
        "claim_generator_info": [{"name": "headshot", "version": version("headshot")}],
        "assertions": [
            # allActionsIncluded: the list is complete, so the Asset Rubrics signals read it as unambiguous
            {"label": "c2pa.actions.v2", "data": {"actions": actions, "allActionsIncluded": True}},
            {"label": "c2pa.training-mining", "data": {"entries": TRAINING_MINING_FORBIDDEN}},
            *soft_bindings,
        ],
    }


def _soft_binding(algorithm: str, value: bytes) -> dict:
    return {
        "label": "c2pa.soft-binding",
        "data": {"alg": algorithm, "blocks": [{"scope": {}, "value": base64.b64encode(value).decode()}]},
    }


def _new_payload(registry: SoftBindingRegistry, marker: Watermarker) -> int:
    while registry.find_payload(payload := secrets.randbits(marker.payload_bits)) is not None:
        continue
    return payload


def _watermarked(image: Image.Image, data: bytes, payload: int, marker: Watermarker) -> tuple[bytes, bool]:
    """The file re-encoded with the watermark in its pixels, in its own format and quality.

    Orientation is applied to the pixels (so a viewer's rotated copy still carries an upright mark);
    alpha, grey levels, ICC profile and PNG text survive; EXIF keeps only what does not describe a capture
    (_with_xmp removes the rest); 16-bit images become 8-bit. Images with a side under the algorithm's
    min_side are returned unchanged (too small to carry the pattern).
    """
    if min(image.size) < marker.min_side:
        return data, False
    upright = ImageOps.exif_transpose(image)
    has_alpha = "A" in upright.getbands() or "transparency" in upright.info
    grey = upright.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")
    base = _eight_bit(upright)
    marked = marker.embed(base.convert("RGB"), payload)
    if grey:
        marked = marked.convert("L")
    if has_alpha:
        marked.putalpha(base.convert("RGBA").getchannel("A"))

    options = {"exif": upright.getexif()}
    if icc := image.info.get("icc_profile"):
        options["icc_profile"] = icc
    if image.format in ("JPEG", "MPO"):
        options.update(qtables=image.quantization, subsampling=_jpeg_subsampling(image))
        output_format = "JPEG"
    elif image.format == "PNG":
        info = PngImagePlugin.PngInfo()
        for key, value in image.text.items():
            if key != "XML:com.adobe.xmp":
                info.add_text(key, value)
        options["pnginfo"] = info
        output_format = "PNG"
    else:
        options.update(lossless=b"VP8L" in data[:4096], quality=95)
        output_format = "WEBP"
    buffer = io.BytesIO()
    marked.save(buffer, output_format, **options)
    return buffer.getvalue(), True


def _eight_bit(image: Image.Image) -> Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        return Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return image.convert("RGB")
    if image.mode == "PA":
        return image.convert("RGBA")
    return image


def _jpeg_subsampling(image: Image.Image) -> int:
    from PIL import JpegImagePlugin

    sampling = JpegImagePlugin.get_sampling(image)
    return sampling if sampling >= 0 else 2


def _with_xmp(data: bytes, agent: str) -> bytes:
    """Add the IPTC digital source type and a PLUS data-mining prohibition to the file's XMP, and remove
    what describes a camera capture: a generated image must not claim "Canon EOS 5D Mark IV" next to "AI
    generated". EXIF keeps only NEUTRAL_EXIF (a description, rights, resolution); XMP loses its exif, tiff,
    aux (lens, serial number) namespaces and its creation dates. The ICC profile stays."""
    import pyexiv2

    try:
        with pyexiv2.ImageData(data) as metadata:
            try:
                exif = metadata.read_exif()
            except (RuntimeError, UnicodeDecodeError):  # unreadable EXIF cannot be sorted: none of it stays
                exif = {"unreadable": ""}
            kept = {key: value for key, value in exif.items() if key in NEUTRAL_EXIF}
            if len(kept) < len(exif):
                metadata.clear_exif()
                if kept:
                    metadata.modify_exif(kept)
            capture = {key: None for key in metadata.read_xmp() if key.startswith(CAPTURE_XMP)}
            if capture:
                metadata.modify_xmp(capture)
            metadata.modify_xmp(
                {
                    "Xmp.iptcExt.DigitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                    "Xmp.xmp.CreatorTool": agent,
                    "Xmp.plus.DataMining": PLUS_DATA_MINING_PROHIBITED,
                }
            )
            return metadata.get_bytes()
    except RuntimeError as exc:
        raise ImageInputError(f"cannot write XMP metadata into this file ({exc}); re-export the image") from None


@lru_cache(maxsize=1)
def _signing_context():
    """Thumbnails off: they would add ~200 KB and, for ingredients, pixels of private photos. Our own
    assertions are created (attested by headshot as the claim generator), not gathered: actions in a gathered
    assertion read as ambiguous in the C2PA Asset Rubrics."""
    import c2pa

    created = ["c2pa.actions", "c2pa.training-mining", "c2pa.soft-binding"]
    builder = {"thumbnail": {"enabled": False}, "created_assertion_labels": created}
    return c2pa.Context(c2pa.Settings.from_dict({"builder": builder}))
