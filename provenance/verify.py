"""The verdict on any photo: what its Content Credentials and metadata say about how it was made."""

import io
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from provenance.credentials import TrustAnchors
from provenance.evidence import Evidence
from provenance.images import MIME_TYPES, ImageInputError, ImageLimits, decode_image, read_file
from provenance.metadata import AI_SOURCE_TYPES, CAPTURE_SOURCE_TYPES, read_metadata, source_type_name
from provenance.registry import SoftBindingRegistry
from provenance.remote_manifests import RemoteManifestFetcher, RemoteManifestRefused, remote_manifest_url, where

Label = Literal[
    "ai_verified",
    "capture_verified",
    "ai_unverified_signer",
    "credentials_no_ai_claim",
    "ai_soft_binding",
    "invalid_credentials",
    "ai_metadata",
    "no_provenance",
]
CredentialsState = Literal["none", "trusted", "valid-untrusted", "invalid"]
_STATES: dict[str, CredentialsState] = {
    "Trusted": "trusted",
    "Valid": "valid-untrusted",
    "Invalid": "invalid",
}
_TRAINING_MINING_LABELS = ("c2pa.training-mining", "cawg.training-mining")
_ACTIONS_LABELS = ("c2pa.actions", "c2pa.actions.v2")


class Signer(BaseModel):
    subject: str
    issuer: str


class CredentialsReport(BaseModel):
    state: CredentialsState = "none"
    failure_codes: list[str] = Field(default_factory=list)
    signer: Signer | None = None
    time_stamped_at: str | None = None
    claim_generator: str | None = None
    digital_source_type: str | None = None
    training_mining: dict | None = None
    ingredients: list[dict] = Field(default_factory=list)
    manifest_label: str | None = None
    remote_manifest_url: str | None = Field(
        None, description="Where the file says its Content Credentials are stored, when it refers to a remote manifest."
    )


class Verdict(BaseModel):
    file: str
    label: Label
    ai_generated: bool | None
    summary: str
    c2pa: CredentialsReport
    metadata: dict
    evidence: list[Evidence]
    recovered_manifest: dict | None = Field(
        None, description="For ai_soft_binding: the manifest the registered original carried."
    )


class VerifyFailure(BaseModel):
    file: str
    error: str


def verify_path(
    path: Path,
    trust: TrustAnchors,
    limits: ImageLimits = ImageLimits(),
    registry: SoftBindingRegistry | None = None,
    remote_manifests: RemoteManifestFetcher | None = None,
) -> Verdict | VerifyFailure:
    """Verify one file on disk; an unusable file gives a VerifyFailure that says what is wrong."""
    try:
        data = read_file(Path(path), limits)
        return verify_image(data, trust, limits, name=str(path), registry=registry, remote_manifests=remote_manifests)
    except ImageInputError as exc:
        return VerifyFailure(file=str(path), error=str(exc))


def verify_image(
    data: bytes,
    trust: TrustAnchors,
    limits: ImageLimits = ImageLimits(),
    *,
    name: str = "",
    registry: SoftBindingRegistry | None = None,
    remote_manifests: RemoteManifestFetcher | None = None,
) -> Verdict:
    """Read and validate the image's Content Credentials and metadata, and decide its label.

    Without valid credentials, and given a registry, the watermark and fingerprints are looked up too.
    A file that only refers to Content Credentials stored elsewhere is judged on what it carries itself,
    unless `remote_manifests` allows that host (provenance/remote_manifests.py).
    Raises ImageInputError when the bytes are not a usable JPEG, PNG or WebP image.
    """
    image = decode_image(data, limits)
    credentials, c2pa_evidence = _read_credentials(data, MIME_TYPES[image.format], trust, remote_manifests)
    metadata = read_metadata(image)
    evidence = c2pa_evidence + metadata.evidence
    recovered = None
    if registry is not None and credentials.state in ("none", "invalid"):
        from provenance.soft_binding import find_disclosure

        result = find_disclosure(image, registry)
        evidence += result.findings
        recovered = result.entry.manifest if result.entry else None
    label = _decide_label(credentials, recovered is not None, metadata.declares_ai)
    return Verdict(
        file=name,
        label=label,
        ai_generated=_ai_generated(label),
        summary=_summary(label, credentials, evidence),
        c2pa=credentials,
        metadata=metadata.fields,
        evidence=evidence,
        recovered_manifest=recovered,
    )


def _ai_generated(label: Label) -> bool | None:
    """True for every ai_* label, False only for a verified capture, unknown otherwise."""
    if label.startswith("ai_"):
        return True
    return False if label == "capture_verified" else None


def _read_credentials(
    data: bytes, mime_type: str, trust: TrustAnchors, remote_manifests: RemoteManifestFetcher | None
) -> tuple[CredentialsReport, list[Evidence]]:
    import c2pa

    try:
        reader = c2pa.Reader.try_create(mime_type, io.BytesIO(data), context=trust.c2pa_context())
    except c2pa.C2paError as exc:
        if url := remote_manifest_url(exc):
            return _remote_credentials(data, mime_type, trust, url, remote_manifests)
        return _unparsable(exc)
    if reader is None:
        return CredentialsReport(), []
    return _report(reader)


def _unparsable(exc: Exception) -> tuple[CredentialsReport, list[Evidence]]:
    report = CredentialsReport(state="invalid", failure_codes=["claim.malformed"])
    return report, [Evidence(source="c2pa", detail=f"the C2PA manifest cannot be parsed: {exc}", strength="strong")]


def _remote_credentials(
    data: bytes, mime_type: str, trust: TrustAnchors, url: str, remote_manifests: RemoteManifestFetcher | None
) -> tuple[CredentialsReport, list[Evidence]]:
    """A file that refers to a remote manifest: judged on what it carries, unless the operator allows its host."""
    import c2pa

    reason = "not fetched"
    if remote_manifests is not None:
        try:
            manifest = remote_manifests.fetch(url)
        except RemoteManifestRefused as exc:
            reason = f"not fetched: {exc}"
        else:
            fetched = Evidence(
                source="c2pa",
                detail=f"Content Credentials fetched from {where(url)}, a host this server's operator allows",
                strength="weak",
            )
            try:
                reader = c2pa.Reader(mime_type, io.BytesIO(data), manifest, context=trust.c2pa_context())
            except c2pa.C2paError as exc:
                report, evidence = _unparsable(exc)
            else:
                report, evidence = _report(reader)
            report.remote_manifest_url = url
            return report, [fetched, *evidence]
    detail = f"refers to Content Credentials stored at {where(url)}; {reason}"
    return CredentialsReport(remote_manifest_url=url), [Evidence(source="c2pa", detail=detail, strength="weak")]


def _report(reader) -> tuple[CredentialsReport, list[Evidence]]:
    with reader:
        store = json.loads(reader.json())
        state = _STATES.get(reader.get_validation_state() or "", "invalid")
        results = reader.get_validation_results() or {}
    failures = (results.get("activeManifest") or {}).get("failure", [])
    codes = sorted({item["code"] for item in failures} - {"signingCredential.untrusted"})
    manifests = store.get("manifests", {})
    active = manifests.get(store.get("active_manifest"), {})
    source_type = _digital_source_type(active, manifests)
    report = CredentialsReport(
        state=state,
        failure_codes=codes,
        signer=_signer(active),
        time_stamped_at=(active.get("signature_info") or {}).get("time"),
        claim_generator=_claim_generator(active),
        digital_source_type=source_type,
        training_mining=next(
            (a.get("data") for a in active.get("assertions", []) if a.get("label") in _TRAINING_MINING_LABELS),
            None,
        ),
        ingredients=[_ingredient(item) for item in active.get("ingredients", [])],
        manifest_label=store.get("active_manifest"),
    )
    return report, _credentials_evidence(report)


def _digital_source_type(manifest: dict, manifests: dict, depth: int = 0) -> str | None:
    """The AI source type if any action declares one, else the first declared; else ask the parent."""
    declared = [
        action["digitalSourceType"]
        for assertion in manifest.get("assertions", [])
        if assertion.get("label") in _ACTIONS_LABELS
        for action in (assertion.get("data") or {}).get("actions", [])
        if isinstance(action, dict) and isinstance(action.get("digitalSourceType"), str)
    ]
    for value in declared:
        if source_type_name(value) in AI_SOURCE_TYPES:
            return value
    if declared:
        return declared[0]
    parent = next((i for i in manifest.get("ingredients", []) if i.get("relationship") == "parentOf"), None)
    if parent and parent.get("active_manifest") in manifests and depth < 16:
        return _digital_source_type(manifests[parent["active_manifest"]], manifests, depth + 1)
    return None


def _signer(manifest: dict) -> Signer | None:
    info = manifest.get("signature_info")
    if not info:
        return None
    return Signer(subject=info.get("common_name") or "(no common name)", issuer=info.get("issuer") or "(unknown)")


def _claim_generator(manifest: dict) -> str | None:
    infos = manifest.get("claim_generator_info") or []
    if infos and isinstance(infos[0], dict) and infos[0].get("name"):
        return " ".join(str(infos[0][key]) for key in ("name", "version") if infos[0].get(key))
    return manifest.get("claim_generator")


def _ingredient(item: dict) -> dict:
    return {
        "title": item.get("title"),
        "relationship": item.get("relationship"),
        "format": item.get("format"),
        "sha256": (item.get("metadata") or {}).get("sha256"),
        "has_credentials": bool(item.get("active_manifest")),
    }


def _credentials_evidence(report: CredentialsReport) -> list[Evidence]:
    source_type = source_type_name(report.digital_source_type)
    signer = f"{report.signer.subject} ({report.signer.issuer})" if report.signer else "an unknown signer"
    if report.state == "invalid":
        codes = ", ".join(report.failure_codes) or "an ingredient failed validation"
        evidence = [Evidence(source="c2pa", detail=f"Content Credentials fail validation: {codes}", strength="strong")]
        if source_type in AI_SOURCE_TYPES:
            evidence.append(
                Evidence(source="c2pa", detail=f"the invalid manifest claims '{source_type}'", strength="weak")
            )
        return evidence
    trusted = "a trusted signer" if report.state == "trusted" else "a signer outside the trust list"
    claim = f"declares '{source_type}'" if source_type else "makes no digital-source-type claim"
    strength = "strong" if report.state == "trusted" else "weak"
    return [
        Evidence(
            source="c2pa",
            detail=f"valid Content Credentials from {trusted}, {signer}, {claim}",
            strength=strength,
        )
    ]


def _decide_label(credentials: CredentialsReport, soft_binding_matched: bool, metadata_declares_ai: bool) -> Label:
    source_type = source_type_name(credentials.digital_source_type)
    if credentials.state == "trusted" and source_type in AI_SOURCE_TYPES:
        return "ai_verified"
    if credentials.state == "trusted" and source_type in CAPTURE_SOURCE_TYPES:
        return "capture_verified"
    if credentials.state == "valid-untrusted" and source_type in AI_SOURCE_TYPES:
        return "ai_unverified_signer"
    if credentials.state in ("trusted", "valid-untrusted"):
        return "credentials_no_ai_claim"
    if soft_binding_matched:
        return "ai_soft_binding"
    if credentials.state == "invalid":
        return "invalid_credentials"
    if metadata_declares_ai:
        return "ai_metadata"
    return "no_provenance"


def _summary(label: Label, credentials: CredentialsReport, evidence: list[Evidence]) -> str:
    signer = credentials.signer.subject if credentials.signer else "an unknown signer"
    match label:
        case "ai_verified":
            return f"AI-generated: trusted Content Credentials signed by {signer} declare it was made by generative AI."
        case "capture_verified":
            return (
                f"Camera capture: trusted Content Credentials signed by {signer} declare it was captured by a device."
            )
        case "ai_unverified_signer":
            return (
                f"Declared AI-generated by valid Content Credentials, but their signer ({signer}) is not in this "
                "installation's trust list, so who made the declaration is not confirmed."
            )
        case "credentials_no_ai_claim":
            return (
                "Valid Content Credentials that make no AI-generation claim; they describe the file's history "
                "but do not by themselves prove the photo is real."
            )
        case "ai_soft_binding":
            also = " (the copy's own credentials are invalid)" if credentials.state == "invalid" else ""
            return (
                "AI-generated: this is a copy of an image this installation disclosed as AI-generated, "
                f"recognised by its invisible watermark or fingerprint after its metadata was lost{also}."
            )
        case "invalid_credentials":
            codes = ", ".join(credentials.failure_codes) or "an ingredient failed validation"
            return (
                f"The Content Credentials fail validation ({codes}): the image or its manifest changed after "
                "signing, or the signature is bad or expired, so nothing they claim can be relied on."
            )
        case "ai_metadata":
            found = "; ".join(item.detail for item in evidence if item.source != "c2pa")
            return (
                f"Unsigned metadata declares AI generation ({found}); anyone can add or remove such metadata, "
                "so this is a declaration, not proof."
            )
        case _:
            elsewhere = (
                " (the file refers to Content Credentials stored elsewhere, which were not read)"
                if credentials.remote_manifest_url
                else ""
            )
            return (
                f"No Content Credentials, AI declaration or known generator metadata was found{elsewhere}; this "
                "does not mean the photo is real, since most AI images carry no provenance at all."
            )
