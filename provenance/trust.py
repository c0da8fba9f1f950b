"""Trust anchors and where each comes from: the official C2PA trust list, this installation's CA, the operator's.

The C2PA trust list (anchors of conforming generator products: cameras, OpenAI, Google, Adobe...) and its
time-stamping-authority list ship with the package (`provenance/trust_lists/`, CC BY 4.0, see NOTICE.md there).
`update_trust_list` keeps an operator's newer copy in a directory of its own, which then wins over the bundled
one. c2pa-rs keeps one pool of anchors for signers and time stamps alike, so both lists go into the reader's
context; `TrustAnchors.source_of` tells afterwards which source vouched for a signer.
"""

import base64
import datetime as dt
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

TrustSource = Literal["c2pa-trust-list", "installation", "user"]
Purpose = Literal["signing", "time-stamping"]
SOURCE_WORDS: dict[str, str] = {
    "c2pa-trust-list": "on the C2PA trust list",
    "installation": "this installation's own certificate authority",
    "user": "a certificate this server's operator added",
}
BUNDLED_TRUST_LISTS = Path(__file__).parent / "trust_lists"
LIST_FILES: dict[str, str] = {"signing": "C2PA-TRUST-LIST.pem", "time-stamping": "C2PA-TSA-TRUST-LIST.pem"}


class TrustListError(ValueError):
    """A trust list file that cannot be used; the message says why."""


@dataclass(frozen=True)
class TrustAnchor:
    source: TrustSource
    purpose: Purpose
    subject: str
    sha256_fingerprint: str
    not_after: dt.datetime
    pem: str
    subject_attributes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, cert: x509.Certificate, source: TrustSource, purpose: Purpose = "signing") -> "TrustAnchor":
        return cls(
            source=source,
            purpose=purpose,
            subject=cert.subject.rfc4514_string(),
            sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
            not_after=cert.not_valid_after_utc,
            pem=cert.public_bytes(serialization.Encoding.PEM).decode(),
            subject_attributes=tuple((a.rfc4514_attribute_name, str(a.value)) for a in cert.subject),
        )

    def describe(self) -> dict:
        return {
            "source": self.source,
            "purpose": self.purpose,
            "subject": self.subject,
            "sha256_fingerprint": self.sha256_fingerprint,
            "not_after": self.not_after.isoformat(),
            "expired": self.not_after <= dt.datetime.now(dt.UTC),
        }


@dataclass(frozen=True)
class TrustAnchors:
    """Certificates whose signers (and time-stamping authorities) read as trusted, each with its source."""

    anchors: tuple[TrustAnchor, ...] = ()

    @classmethod
    def from_pem(cls, pem: str | bytes, source: TrustSource, purpose: Purpose = "signing") -> "TrustAnchors":
        data = pem.encode() if isinstance(pem, str) else pem
        if not data.strip():
            return cls()
        return cls(tuple(TrustAnchor.of(cert, source, purpose) for cert in x509.load_pem_x509_certificates(data)))

    def __add__(self, other: "TrustAnchors") -> "TrustAnchors":
        seen = {(a.sha256_fingerprint, a.source, a.purpose) for a in self.anchors}
        added = tuple(a for a in other.anchors if (a.sha256_fingerprint, a.source, a.purpose) not in seen)
        return TrustAnchors(self.anchors + added)

    @property
    def pem(self) -> str:
        unique = dict.fromkeys(anchor.pem for anchor in self.anchors)
        return "".join(unique)

    def sources(self) -> list[TrustSource]:
        return list(dict.fromkeys(a.source for a in self.anchors if a.purpose == "signing"))

    def c2pa_context(self):
        return _reader_context(self.pem)

    def only(self, source: TrustSource) -> "TrustAnchors":
        """The signing anchors of one source, with every time-stamping authority (they date signatures only)."""
        return TrustAnchors(tuple(a for a in self.anchors if a.purpose == "time-stamping" or (a.source == source)))

    def source_of(self, issuer: dict[str, str]) -> TrustSource | None:
        """The source of the anchor that issued a signing certificate directly (issuer as crJSON writes it)."""
        for anchor in self.anchors:
            if anchor.purpose == "signing" and dict(anchor.subject_attributes) == issuer:
                return anchor.source
        return None


@lru_cache(maxsize=8)
def _reader_context(pem: str):
    import c2pa

    # Never fetch a manifest a file only points to: provenance/remote_manifests.py says why.
    settings = {"verify": {"verify_trust": True, "remote_manifest_fetch": False}}
    if pem:
        settings["trust"] = {"trust_anchors": pem}
    return c2pa.Context(c2pa.Settings.from_dict(settings))


def official_trust_list(directory: Path | None = None) -> TrustAnchors:
    """The C2PA trust list and TSA list: an operator's newer copy in `directory` when there is one, else the
    bundled files."""
    anchors = TrustAnchors()
    for purpose, name in LIST_FILES.items():
        path = Path(directory) / name if directory is not None else None
        if path is None or not path.exists():
            path = BUNDLED_TRUST_LISTS / name
        anchors += _cached_list(str(path), path.stat().st_mtime_ns, purpose)
    return anchors


@lru_cache(maxsize=8)
def _cached_list(path: str, mtime_ns: int, purpose: Purpose) -> TrustAnchors:
    return TrustAnchors.from_pem(Path(path).read_bytes(), "c2pa-trust-list", purpose)


def update_trust_list(source: Path, directory: Path, purpose: Purpose = "signing") -> TrustAnchors:
    """Replace the trust list (or the TSA list) with `source`: PEM certificates, or the C2PA list's JSON."""
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        raise TrustListError(f"cannot read {source}: {exc.strerror}") from None
    certificates = _certificates(data, source)
    if not certificates:
        raise TrustListError(f"{source} holds no certificate; expected PEM certificates or the C2PA trust list JSON")
    pem = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certificates)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / LIST_FILES[purpose]
    temporary = target.with_suffix(".tmp")
    temporary.write_bytes(pem)
    os.replace(temporary, target)
    return TrustAnchors.from_pem(pem, "c2pa-trust-list", purpose)


def _certificates(data: bytes, source: Path) -> list[x509.Certificate]:
    if data.lstrip().startswith(b"{"):
        try:
            document = json.loads(data)
            entities = document["LoTE"]["TrustedEntitiesList"]
            values = [
                certificate["val"]
                for entity in entities
                for service in entity.get("TrustedEntityServices", [])
                for certificate in service["ServiceInformation"]["ServiceDigitalIdentity"]["X509Certificates"]
            ]
            return [x509.load_der_x509_certificate(base64.b64decode(value)) for value in values]
        except (ValueError, KeyError, TypeError) as exc:
            raise TrustListError(f"{source} is JSON but not a C2PA trust list (LoTE): {exc}") from None
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TrustListError(f"{source} holds no PEM certificate") from None


# Failures that concern who signed, not what was signed: with a validated claim signature and matching hashes,
# they leave the claim standing as the signer's, unconfirmed. Any other failure means something changed.
SIGNER_ONLY_FAILURES: dict[str, str] = {
    "signingCredential.expired": "certificate expired",
    "signingCredential.untrusted": "not on the trust list",
    "timeStamp.untrusted": "time-stamp from an authority not on the trust list",
    "timeStamp.outsideValidity": "time-stamp outside the certificate's validity",
}
CONTENT_HASH_MATCHES = ("assertion.dataHash.match", "assertion.boxesHash.match", "assertion.bmffHash.match")


@dataclass(frozen=True)
class SignatureJudgement:
    state: Literal["trusted", "valid-untrusted", "invalid"]
    failure_codes: set[str]  # of the active manifest, as c2pa reported them
    source: TrustSource | None  # where a trusted signer's trust comes from
    reasons: list[str]  # why a valid signature's signer is not confirmed
    unchanged: bool  # the image and manifest are as signed


def judge_signature(c2pa_state: str, results: dict, crjson: dict, trust: TrustAnchors, reread) -> SignatureJudgement:
    """Tell apart a trusted signer, a valid signature whose signer is unconfirmed (untrusted, or expired without
    a trusted time-stamp), and a changed image or manifest. `reread(context)` opens the same file again under
    other anchors, needed only when a trusted signer's issuer is not itself an anchor."""
    active = results.get("activeManifest") or {}
    failures = {item["code"] for item in active.get("failure", [])}
    successes = {item["code"] for item in active.get("success", [])}
    ingredient_failures = {
        item["code"]
        for delta in results.get("ingredientDeltas") or []
        for item in (delta.get("validationDeltas") or {}).get("failure", [])
    }
    manifests = crjson.get("manifests") or [{}]
    issuer = ((manifests[0].get("signature") or {}).get("certificateInfo") or {}).get("issuer") or {}
    anchored = trust.source_of(issuer)
    if c2pa_state == "Trusted":
        return SignatureJudgement("trusted", failures, anchored or _source(trust, reread), [], True)
    sound = "claimSignature.validated" in successes and any(code in successes for code in CONTENT_HASH_MATCHES)
    signer_only = (failures | ingredient_failures) <= SIGNER_ONLY_FAILURES.keys()
    if c2pa_state == "Valid" or (c2pa_state == "Invalid" and sound and signer_only and failures):
        # An expired certificate from an anchor is also reported untrusted: its issuer is on the list, though.
        reported = failures - {"signingCredential.untrusted"} if anchored else failures
        reasons = [words for code, words in SIGNER_ONLY_FAILURES.items() if code in reported]
        return SignatureJudgement("valid-untrusted", failures, None, reasons or ["not on the trust list"], True)
    return SignatureJudgement("invalid", failures, None, [], False)


def _source(trust: TrustAnchors, reread) -> TrustSource | None:
    for source in trust.sources():  # an intermediate between signer and anchor: ask each source alone
        with reread(trust.only(source).c2pa_context()) as reader:
            if reader.get_validation_state() == "Trusted":
                return source
    return None
