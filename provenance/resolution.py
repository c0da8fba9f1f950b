"""The C2PA soft-binding resolution API's answers, over the registry (the HTTP layer is service/routes/resolution.py).

Follows the C2PA Soft Binding Resolution API 1.1.0 (OpenAPI, CC BY 4.0): `supportedAlgorithms` lists what a
query may name; `byBinding` takes an algorithm and a base64 value (for our watermark: the 64-bit payload, as
the image's `c2pa.soft-binding` assertion declares it); `byContent` takes the image itself and applies the
same decision rule as `verify` (provenance/soft_binding.py): a watermark, or fingerprints confirmed by the
watermark's code bits. Fingerprints alone never identify an image here, so a fingerprint value is not a
`byBinding` query. Every match is a confirmed identification: its similarityScore is 100.
"""

import base64
import binascii
import io
import json
from dataclasses import dataclass

from PIL import Image
from pydantic import BaseModel, Field

from provenance import fingerprint, watermark
from provenance.registry import RegistryEntry, SoftBindingRegistry
from provenance.trust import TrustAnchors, TrustSource


class ResolutionQueryError(ValueError):
    """A query the API cannot answer (unknown algorithm, malformed value); the message says what to send."""


@dataclass(frozen=True)
class Match:
    manifest_id: str
    similarity_score: int = 100

    def as_dict(self) -> dict:
        return {"manifestId": self.manifest_id, "similarityScore": self.similarity_score}


def supported_algorithms() -> dict:
    """`c2pa.softBindingAlgList`: the algorithms a query may name."""
    return {"watermarks": [{"alg": watermark.ALGORITHM}], "fingerprints": [{"alg": fingerprint.ALGORITHM}]}


def matches_by_binding(registry: SoftBindingRegistry, algorithm: str, value: str, max_results: int = 10) -> list[Match]:
    """The manifests registered with this soft-binding value."""
    if algorithm == fingerprint.ALGORITHM:
        raise ResolutionQueryError(
            f"{algorithm} values are not looked up alone (fingerprints never identify an image by themselves "
            "here); send the image to /matches/byContent instead"
        )
    if algorithm != watermark.ALGORITHM:
        raise ResolutionQueryError(f"unsupported algorithm {algorithm!r}; see /services/supportedAlgorithms")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ResolutionQueryError("value is not base64") from None
    if len(raw) != watermark.PAYLOAD_BITS // 8:
        raise ResolutionQueryError(
            f"a {algorithm} value is the {watermark.PAYLOAD_BITS // 8}-byte payload, base64-encoded; "
            f"got {len(raw)} bytes"
        )
    entry = registry.find_payload(int.from_bytes(raw, "big"))
    return [Match(entry.manifest_label)][:max_results] if entry else []


def matches_by_content(
    image: Image.Image, registry: SoftBindingRegistry, algorithm: str | None = None, max_results: int = 10
) -> list[Match]:
    """The manifests of the registered image this one is a copy of (decided as `verify` decides)."""
    known = {watermark.ALGORITHM, fingerprint.ALGORITHM}
    if algorithm is not None and algorithm not in known:
        raise ResolutionQueryError(f"unsupported algorithm {algorithm!r}; see /services/supportedAlgorithms")
    from provenance.soft_binding import find_disclosure

    result = find_disclosure(image, registry)
    return [Match(result.entry.manifest_label)][:max_results] if result.entry else []


class RecoveredCredentials(BaseModel):
    """What the manifest store of a recognised original says, validated under this installation's anchors."""

    manifest_id: str
    signer: str | None = Field(None, description="The signing certificate's common name.")
    issuer: str | None = Field(None, description="The organisation of the signing certificate.")
    generator: str | None = Field(None, description="The software that made the image, as its manifest declares.")
    digital_source_type: str | None = None
    disclosed_at: str | None = Field(None, description="When it was signed (time-stamp) or registered.")
    signature_valid: bool = Field(False, description="The claim signature of the stored manifest validates.")
    trust_source: TrustSource | None = Field(None, description="Where the signer's trust comes from, if trusted.")


def recovered_credentials(entry: RegistryEntry, trust: TrustAnchors) -> RecoveredCredentials | None:
    """Read the registered original's manifest store (None when none is kept). Its hard binding cannot match
    here (the pixels are not the original's): what counts is the signature and who made it."""
    import c2pa

    if entry.manifest_store is None:
        return None
    try:
        with c2pa.Reader("application/c2pa", io.BytesIO(entry.manifest_store), context=trust.c2pa_context()) as reader:
            crjson = json.loads(reader.crjson())
            results = (reader.get_validation_results() or {}).get("activeManifest") or {}
    except c2pa.C2paError:
        return None
    successes = {item["code"] for item in results.get("success", [])}
    manifest = (crjson.get("manifests") or [{}])[0]
    certificate = (manifest.get("signature") or {}).get("certificateInfo") or {}
    stamp = ((manifest.get("signature") or {}).get("timeStampInfo") or {}).get("timestamp")
    actions = ((manifest.get("assertions") or {}).get("c2pa.actions.v2") or {}).get("actions") or []
    created = next((a for a in actions if isinstance(a, dict) and a.get("action") == "c2pa.created"), {})
    generator = (
        (created.get("softwareAgent") or {}).get("name") if isinstance(created.get("softwareAgent"), dict) else None
    )
    return RecoveredCredentials(
        manifest_id=entry.manifest_label,
        signer=(certificate.get("subject") or {}).get("CN"),
        issuer=(certificate.get("subject") or {}).get("O"),
        generator=generator,
        digital_source_type=created.get("digitalSourceType"),
        disclosed_at=stamp or entry.created_at.isoformat(),
        signature_valid="claimSignature.validated" in successes,
        trust_source=trust.source_of(certificate.get("issuer") or {})
        if "signingCredential.trusted" in successes
        else None,
    )
