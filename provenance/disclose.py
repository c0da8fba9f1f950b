"""Disclosure: mark an image as AI-generated with signed C2PA Content Credentials and XMP."""

import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version

from provenance.credentials import CredentialsError, SigningIdentity
from provenance.images import MIME_TYPES, ImageInputError, ImageLimits, decode_image

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
PLUS_DATA_MINING_PROHIBITED = "http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED"
TRAINING_MINING_FORBIDDEN = {
    "c2pa.ai_training": {"use": "notAllowed"},
    "c2pa.ai_generative_training": {"use": "notAllowed"},
    "c2pa.data_mining": {"use": "notAllowed"},
}
_HEX = re.compile(r"^[0-9a-fA-F]{8,128}$")


@dataclass(frozen=True)
class Disclosure:
    """A disclosed image: the signed bytes and what its manifest says."""

    data: bytes
    mime_type: str
    manifest_label: str
    manifest: dict
    overhead_bytes: int


def software_agent(generator: str | None) -> str:
    own = f"headshot {version('headshot')}"
    return f"{own} ({generator})" if generator else own


def parse_model_hashes(pairs: Sequence[str]) -> dict[str, str]:
    """Parse NAME=HEX pairs as given on the command line."""
    hashes: dict[str, str] = {}
    for pair in pairs:
        name, sep, digest = pair.partition("=")
        if not sep or not name.strip() or not _HEX.match(digest.strip()):
            raise ImageInputError(f"--model-hash {pair!r}: expected NAME=HEX, e.g. sdxl-base=3f2a...")
        hashes[name.strip()] = digest.strip().lower()
    return hashes


def disclose_image(
    data: bytes,
    identity: SigningIdentity,
    *,
    references: Sequence[bytes] = (),
    generator: str | None = None,
    model_hashes: Mapping[str, str] | None = None,
    limits: ImageLimits = ImageLimits(),
) -> Disclosure:
    """Embed XMP and a signed C2PA manifest declaring the image AI-generated (JPEG, PNG or WebP).

    Reference photos become `inputTo` ingredients carrying only the SHA-256 of their original bytes
    and a neutral title: no file name, no thumbnail, no pixels.
    """
    import c2pa

    image = decode_image(data, limits)
    mime_type = MIME_TYPES[image.format]
    agent = software_agent(generator)
    with_xmp = _with_xmp(data, agent)

    action = {
        "action": "c2pa.created",
        "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
        "softwareAgent": {"name": agent},
    }
    if model_hashes:
        action["parameters"] = {"model_hashes": dict(model_hashes)}
    manifest = {
        "claim_generator_info": [{"name": "headshot", "version": version("headshot")}],
        "assertions": [
            {"label": "c2pa.actions.v2", "data": {"actions": [action]}},
            {"label": "c2pa.training-mining", "data": {"entries": TRAINING_MINING_FORBIDDEN}},
        ],
    }
    builder = c2pa.Builder(manifest, context=_signing_context())
    for number, reference in enumerate(references, start=1):
        ingredient = {
            "title": f"reference photo {number}",
            "relationship": "inputTo",
            "metadata": {"sha256": hashlib.sha256(reference).hexdigest()},
        }
        # An empty stream: the ingredient records the hash above and nothing of the photo itself.
        builder.add_ingredient(ingredient, "application/octet-stream", io.BytesIO(b""))

    signed = io.BytesIO()
    try:
        builder.sign(identity.c2pa_signer(), mime_type, io.BytesIO(with_xmp), signed)
    except c2pa.C2paError as exc:
        if identity.timestamp_url and "http" in str(exc):
            raise CredentialsError(
                f"the timestamp authority {identity.timestamp_url} could not be reached ({exc}); "
                "nothing was signed. Check HEADSHOT_TIMESTAMP_URL or the network"
            ) from None
        raise CredentialsError(f"signing failed: {exc}") from None
    output = signed.getvalue()
    reader = c2pa.Reader(mime_type, io.BytesIO(output))
    return Disclosure(
        data=output,
        mime_type=mime_type,
        manifest_label=reader.get_active_manifest()["label"],
        manifest=reader.get_active_manifest(),
        overhead_bytes=len(output) - len(data),
    )


def _with_xmp(data: bytes, agent: str) -> bytes:
    """Add the IPTC digital source type and a PLUS data-mining prohibition to the file's XMP."""
    import pyexiv2

    try:
        with pyexiv2.ImageData(data) as metadata:
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
    """Thumbnails off: they would add ~200 KB and, for ingredients, pixels of private photos."""
    import c2pa

    return c2pa.Context(c2pa.Settings.from_dict({"builder": {"thumbnail": {"enabled": False}}}))
