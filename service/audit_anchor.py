"""Anchoring the audit chain: an RFC 3161 time-stamp authority signs the chain's head, so a chain rewritten
after that moment no longer matches the token (`headshot audit anchor`; every worker does it each
HEADSHOT_AUDIT_ANCHOR_SECONDS when HEADSHOT_TIMESTAMP_URL names an authority).

What the authority stamps (its message imprint) is the SHA-256 of the canonical JSON (service/audit_chain.py)
of `{"hash": <head hash>, "seq": <head seq>}`. A token is checked offline: its imprint, the CMS signature
over its TSTInfo with the certificate it carries, and whether that certificate chains to the trust anchors
(this installation's root and HEADSHOT_TRUST_ANCHORS, where the TSA's root belongs, as for disclosure).
"""

import base64
import datetime as dt
import hashlib
import logging
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from sqlalchemy import select
from sqlmodel import Session

from service.audit_chain import AnchorCheck, AnchorRecord, ChainProblem, canonical
from service.tables import AuditAnchor, AuditChainHead

log = logging.getLogger("headshot.audit")
_HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}


class AnchorError(RuntimeError):
    """A time-stamp could not be had, or a token does not prove what it should; the message says which."""


@dataclass(frozen=True)
class TokenFacts:
    time_stamped_at: dt.datetime
    nonce: int | None
    signer: x509.Certificate
    certificates: list[x509.Certificate]


def anchored_digest(seq: int, head_hash: str) -> bytes:
    return hashlib.sha256(canonical({"hash": head_hash, "seq": seq})).digest()


def request_token(url: str, digest: bytes, timeout: float = 10.0) -> bytes:
    """A DER TimeStampToken for `digest` (SHA-256) from the authority at `url`, checked before it is returned."""
    import httpx
    from asn1crypto import tsp

    nonce = secrets.randbits(63)
    query = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": digest},
            "nonce": nonce,
            "cert_req": True,
        }
    )
    try:
        response = httpx.post(
            url, content=query.dump(), headers={"Content-Type": "application/timestamp-query"}, timeout=timeout
        )
    except httpx.HTTPError as exc:
        raise AnchorError(
            f"the timestamp authority {url} could not be reached ({exc}); check HEADSHOT_TIMESTAMP_URL"
        ) from None
    if response.status_code != 200:
        raise AnchorError(f"the timestamp authority {url} answered HTTP {response.status_code}")
    try:
        reply = tsp.TimeStampResp.load(response.content)
        status = reply["status"]["status"].native
    except ValueError as exc:
        raise AnchorError(f"the timestamp authority {url} sent no RFC 3161 reply ({exc})") from None
    if status not in ("granted", "granted_with_mods"):
        raise AnchorError(f"the timestamp authority {url} refused the request ({status})")
    token = reply["time_stamp_token"].dump()
    facts = read_token(token, digest)
    if facts.nonce != nonce:
        raise AnchorError(f"the timestamp authority {url} answered another request (nonce differs)")
    return token


def read_token(token: bytes, digest: bytes) -> TokenFacts:
    """Check that `token` time-stamps `digest` and that its signature holds; AnchorError says what does not."""
    from asn1crypto import cms

    try:
        content = cms.ContentInfo.load(token)
        if content["content_type"].native != "signed_data":
            raise AnchorError("the token is not CMS signed data")
        signed = content["content"]
        encapsulated = signed["encap_content_info"]
        if encapsulated["content_type"].native != "tst_info":
            raise AnchorError("the token holds no TSTInfo")
        info_bytes = encapsulated["content"].contents
        info = encapsulated["content"].parsed
        imprint = info["message_imprint"]
        if imprint["hash_algorithm"]["algorithm"].native != "sha256" or imprint["hashed_message"].native != digest:
            raise AnchorError("the token time-stamps other data than this chain head")
        certificates = [
            x509.load_der_x509_certificate(choice.chosen.dump())
            for choice in signed["certificates"] or []
            if choice.name == "certificate"
        ]
        signer_info = signed["signer_infos"][0]
        signer = _signer_certificate(signer_info, certificates)
        _check_signature(signer_info, info_bytes, signer)
        return TokenFacts(info["gen_time"].native.astimezone(dt.UTC), info["nonce"].native, signer, certificates)
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise AnchorError(f"the token cannot be read ({exc})") from None


def _signer_certificate(signer_info, certificates: list[x509.Certificate]) -> x509.Certificate:
    sid = signer_info["sid"]
    for cert in certificates:
        if sid.name == "issuer_and_serial_number":
            issuer_serial = sid.chosen
            if cert.serial_number == issuer_serial["serial_number"].native and (
                cert.issuer.public_bytes() == issuer_serial["issuer"].dump()
            ):
                return cert
        else:
            try:
                key_id = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
            except x509.ExtensionNotFound:
                continue
            if key_id == sid.chosen.native:
                return cert
    raise AnchorError("the token does not carry its signer's certificate")


def _check_signature(signer_info, info_bytes: bytes, signer: x509.Certificate) -> None:
    digest_name = signer_info["digest_algorithm"]["algorithm"].native
    if digest_name not in _HASHES:
        raise AnchorError(f"the token uses an unsupported digest ({digest_name})")
    algorithm = _HASHES[digest_name]()
    attributes = signer_info["signed_attrs"]
    message_digests = [a["values"][0].native for a in attributes if a["type"].native == "message_digest"]
    hasher = hashes.Hash(algorithm)
    hasher.update(info_bytes)
    if message_digests != [hasher.finalize()]:
        raise AnchorError("the token's signed digest does not match its TSTInfo (altered)")
    signed_bytes = b"\x31" + attributes.dump()[1:]  # signed over as a SET OF, not the [0] it is stored as
    signature = signer_info["signature"].native
    kind = signer_info["signature_algorithm"].signature_algo
    key = signer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, signed_bytes, ec.ECDSA(algorithm))
        elif isinstance(key, rsa.RSAPublicKey) and kind == "rsassa_pss":
            key.verify(signature, signed_bytes, padding.PSS(padding.MGF1(algorithm), padding.PSS.AUTO), algorithm)
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, signed_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signed_bytes)
        else:
            raise AnchorError(f"the token's signer uses an unsupported key ({type(key).__name__})")
    except InvalidSignature:
        raise AnchorError("the token's signature does not verify (altered or forged)") from None


def tsa_trusted(facts: TokenFacts, trust_pem: str) -> bool:
    """Whether the token's signer is a time-stamping certificate, valid when it stamped, that chains to one of
    the trust anchors (through certificates the token carries)."""
    if not trust_pem.strip():
        return False
    anchors = x509.load_pem_x509_certificates(trust_pem.encode())
    signer = facts.signer
    try:
        usages = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    if ExtendedKeyUsageOID.TIME_STAMPING not in usages:
        return False
    if not signer.not_valid_before_utc <= facts.time_stamped_at <= signer.not_valid_after_utc:
        return False
    current = signer
    for _ in range(5):
        if current in anchors:
            return True
        issuer = next((cert for cert in anchors + facts.certificates if _issued(current, cert)), None)
        if issuer is None:
            return False
        if issuer in anchors:
            return True
        current = issuer
    return False


def _issued(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert == issuer or cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def check_anchor(
    anchor: AnchorRecord, chain_hash: str | None, chain_problem: ChainProblem | None, trust_pem: str
) -> AnchorCheck:
    """Whether `anchor`'s token is valid and the chain (whose hash at the anchor's seq is `chain_hash`,
    None where the chain does not reach it) still holds the event it time-stamped."""
    check = AnchorCheck(anchor.seq, anchor.hash, anchor.source, anchor.tsa_url, None, None, False)
    try:
        facts = read_token(base64.b64decode(anchor.token), anchored_digest(anchor.seq, anchor.hash))
    except (AnchorError, ValueError) as exc:
        check.problem = f"the anchor of event #{anchor.seq} is not valid: {exc}"
        return check
    check.time_stamped_at = facts.time_stamped_at.isoformat()
    check.tsa = facts.signer.subject.rfc4514_string()
    check.tsa_trusted = tsa_trusted(facts, trust_pem)
    if chain_hash is None:
        if chain_problem is not None and chain_problem.seq is not None and chain_problem.seq <= anchor.seq:
            check.problem = f"event #{anchor.seq}, time-stamped at {check.time_stamped_at}, is past the break"
        else:
            check.problem = (
                f"event #{anchor.seq} was time-stamped at {check.time_stamped_at}, but the chain no longer reaches "
                "it: events were deleted from its end"
            )
    elif chain_hash != anchor.hash:
        check.problem = (
            f"event #{anchor.seq} in the chain is not the one time-stamped at {check.time_stamped_at} "
            f"({anchor.hash[:16]}...): the chain was rewritten after that time"
        )
    return check


def anchor_head(engine, tsa_url: str) -> AuditAnchor:
    """Have the chain's current head time-stamped and record the token (no transaction waits on the TSA)."""
    with Session(engine) as session:
        head = session.get(AuditChainHead, 1)
        seq, head_hash = (head.seq, head.hash) if head else (0, "")
    if seq == 0:
        raise AnchorError("the audit log is empty: nothing to anchor yet")
    digest = anchored_digest(seq, head_hash)
    token = request_token(tsa_url, digest)
    anchor = AuditAnchor(
        seq=seq,
        hash=head_hash,
        tsa_url=tsa_url,
        token=base64.b64encode(token).decode(),
        time_stamped_at=read_token(token, digest).time_stamped_at,
    )
    with Session(engine) as session:
        session.add(anchor)
        session.commit()
        session.refresh(anchor)
    return anchor


def anchor_if_due(engine, tsa_url: str, period_seconds: float) -> AuditAnchor | None:
    """Anchor the head if it moved since the last anchor and that one is older than the period."""
    with Session(engine) as session:
        head = session.get(AuditChainHead, 1)
        last = session.execute(select(AuditAnchor).order_by(AuditAnchor.id.desc()).limit(1)).scalar_one_or_none()
    if head is None or head.seq == 0 or (last is not None and last.seq == head.seq):
        return None
    if last is not None and dt.datetime.now(dt.UTC) - last.created_at < dt.timedelta(seconds=period_seconds):
        return None
    anchor = anchor_head(engine, tsa_url)
    log.info("audit chain anchored at event #%s by %s", anchor.seq, tsa_url)
    return anchor
