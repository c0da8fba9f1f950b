"""Signing credentials: a local certificate authority, the C2PA signing certificate, trust anchors.

Layout of the credentials directory (private keys are written 0600 and never printed or served):

    root-ca.pem, root-ca.key        the installation's certificate authority (long-lived)
    signing-chain.pem, signing.key  the current signing certificate, then its issuers
    retired/                        certificates that were replaced by `rotate` or `import` (public part only)
"""

import datetime as dt
import fcntl
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from provenance.files import write_atomically

C2PA_CLAIM_SIGNING = ObjectIdentifier("1.3.6.1.4.1.62558.2.1")
DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
SIGNING_EKUS = {ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING, C2PA_CLAIM_SIGNING}
ROOT_LIFETIME = dt.timedelta(days=20 * 365)

SignFunction = Callable[[bytes], bytes]


class CredentialsError(RuntimeError):
    """Signing credentials are missing, unusable or expired; the message says what to do."""


@dataclass(frozen=True)
class CertificateInfo:
    role: str
    subject: str
    issuer: str
    serial: str
    sha256_fingerprint: str
    not_before: dt.datetime
    not_after: dt.datetime

    @property
    def expired(self) -> bool:
        return self.not_after <= _now()

    @classmethod
    def of(cls, role: str, cert: x509.Certificate) -> "CertificateInfo":
        return cls(
            role=role,
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            sha256_fingerprint=cert.fingerprint(hashes.SHA256()).hex(":").upper(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
        )


@dataclass(frozen=True)
class SigningIdentity:
    """What c2pa needs to sign: a certificate chain and either a private key or a signing callback."""

    chain_pem: bytes
    algorithm: str
    private_key_pem: bytes | None = None
    sign: SignFunction | None = None
    timestamp_url: str | None = None

    def c2pa_signer(self):
        import c2pa

        if self.sign is not None:
            alg = getattr(c2pa.C2paSigningAlg, self.algorithm.upper())
            return c2pa.Signer.from_callback(self.sign, alg, self.chain_pem.decode(), self.timestamp_url)
        info = c2pa.C2paSignerInfo(
            self.algorithm.encode(),
            self.chain_pem,
            self.private_key_pem,
            self.timestamp_url.encode() if self.timestamp_url else None,
        )
        return c2pa.Signer.from_info(info)


@dataclass(frozen=True)
class TrustAnchors:
    """Root certificates whose signers read as `trusted` (PEM, possibly empty)."""

    pem: str = ""

    def c2pa_context(self):
        return _reader_context(self.pem)


@lru_cache(maxsize=8)
def _reader_context(pem: str):
    import c2pa

    # Never fetch a manifest a file only points to: provenance/remote_manifests.py says why.
    settings = {"verify": {"verify_trust": True, "remote_manifest_fetch": False}}
    if pem:
        settings["trust"] = {"trust_anchors": pem}
    return c2pa.Context(c2pa.Settings.from_dict(settings))


class CredentialStore:
    """Creates, loads, rotates and imports this installation's signing credentials."""

    def __init__(
        self,
        directory: Path,
        *,
        signer_name: str = "headshot disclosure signer",
        organization: str = "headshot",
        lifetime: dt.timedelta | int = 90,
        timestamp_url: str | None = None,
        signing_callback: str | None = None,
        signing_chain: Path | None = None,
    ):
        self.directory = Path(directory)
        self.signer_name = signer_name
        self.organization = organization
        self.lifetime = lifetime if isinstance(lifetime, dt.timedelta) else dt.timedelta(days=lifetime)
        self.timestamp_url = timestamp_url
        self.signing_callback = signing_callback
        self.signing_chain = signing_chain

    @property
    def root_cert_path(self) -> Path:
        return self.directory / "root-ca.pem"

    @property
    def chain_path(self) -> Path:
        return self.directory / "signing-chain.pem"

    @property
    def key_path(self) -> Path:
        return self.directory / "signing.key"

    # -- public operations -------------------------------------------------------------------------

    def signing_identity(self) -> SigningIdentity:
        """The identity to sign with now; creates the CA and certificate on first use, renews expired ones."""
        if self.signing_callback:
            return self._callback_identity()
        with self._locked():
            self._ensure_root()
            if not self.chain_path.exists():
                self._issue_signing_certificate()
            chain = _load_chain(self.chain_path)
            if self._needs_renewal(chain[0]):
                if not self._is_locally_issued(chain[0]):
                    raise CredentialsError(
                        f"the imported signing certificate expired on {chain[0].not_valid_after_utc:%Y-%m-%d}; "
                        "import a new one with `headshot credentials import CERT KEY`, or switch to a locally "
                        "issued one with `headshot credentials rotate`"
                    )
                self._issue_signing_certificate()
                chain = _load_chain(self.chain_path)
            key_pem = self.key_path.read_bytes()
        key = serialization.load_pem_private_key(key_pem, password=None)
        return SigningIdentity(
            chain_pem=self.chain_path.read_bytes(),
            algorithm=_algorithm_for(key.public_key()),
            private_key_pem=key_pem,
            timestamp_url=self.timestamp_url,
        )

    def rotate(self) -> CertificateInfo:
        """Issue a new locally signed certificate; the old one moves to `retired/`."""
        if self.signing_callback:
            raise CredentialsError(
                "signing uses a callback (HEADSHOT_SIGNING_CALLBACK); rotate the key in its KMS/HSM and "
                "point HEADSHOT_SIGNING_CHAIN at the new certificate chain"
            )
        with self._locked():
            self._ensure_root()
            self._issue_signing_certificate()
            return CertificateInfo.of("signing", _load_chain(self.chain_path)[0])

    def import_certificate(self, chain_pem: bytes, key_pem: bytes) -> CertificateInfo:
        """Install an organisation's own signing certificate (chain: leaf first) and its private key."""
        try:
            chain = x509.load_pem_x509_certificates(chain_pem)
        except ValueError:
            raise CredentialsError("the certificate file holds no PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise CredentialsError("the key file is not an unencrypted PEM private key") from None
        leaf = chain[0]
        if leaf.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise CredentialsError("the private key does not belong to the first certificate in the file")
        _check_signing_certificate(leaf)
        if leaf.not_valid_after_utc <= _now():
            raise CredentialsError(f"the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
        identity = SigningIdentity(
            chain_pem=chain_pem, algorithm=_algorithm_for(key.public_key()), private_key_pem=key_pem
        )
        _trial_sign(identity)
        with self._locked():
            self._retire_current()
            write_atomically(self.key_path, _private_pem(key), mode=0o600)
            write_atomically(self.chain_path, b"".join(_pem(cert) for cert in chain))
        return CertificateInfo.of("signing", leaf)

    def describe(self) -> list[CertificateInfo]:
        """Public facts about the root, the current signer and retired signers (no keys)."""
        infos = []
        if self.signing_callback:
            chain = self._callback_chain()
            infos.append(CertificateInfo.of("signing (KMS/HSM callback)", chain[0]))
            infos.extend(CertificateInfo.of("issuer", cert) for cert in chain[1:])
            return infos
        if self.root_cert_path.exists():
            infos.append(CertificateInfo.of("local root CA", _load_chain(self.root_cert_path)[0]))
        if self.chain_path.exists():
            chain = _load_chain(self.chain_path)
            infos.append(CertificateInfo.of("signing", chain[0]))
            infos.extend(
                CertificateInfo.of("issuer", cert)
                for cert in chain[1:]
                if not self.root_cert_path.exists() or _pem(cert) != self.root_cert_path.read_bytes()
            )
        retired = sorted((self.directory / "retired").glob("*.pem"))
        infos.extend(CertificateInfo.of("retired signing", _load_chain(path)[0]) for path in retired)
        return infos

    def trust_anchors(self, extra: Path | None = None) -> TrustAnchors:
        """This installation's root (if created) and the operator's extra anchors, as one PEM bundle."""
        parts = []
        if self.root_cert_path.exists():
            parts.append(self.root_cert_path.read_text())
        if extra is not None:
            try:
                text = Path(extra).read_text()
                x509.load_pem_x509_certificates(text.encode())
            except OSError as exc:
                raise CredentialsError(f"cannot read the trust anchors file {extra}: {exc.strerror}") from None
            except ValueError:
                raise CredentialsError(f"the trust anchors file {extra} holds no PEM certificate") from None
            parts.append(text)
        return TrustAnchors("\n".join(parts))

    # -- internals ---------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _ensure_root(self) -> None:
        if self.root_cert_path.exists():
            return
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(f"{self.organization} local C2PA root", self.organization)
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + ROOT_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        write_atomically(self.directory / "root-ca.key", _private_pem(key), mode=0o600)
        write_atomically(self.root_cert_path, _pem(cert))

    def _issue_signing_certificate(self) -> None:
        root = _load_chain(self.root_cert_path)[0]
        root_key = serialization.load_pem_private_key((self.directory / "root-ca.key").read_bytes(), None)
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        not_after = min(now + self.lifetime, root.not_valid_after_utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(self.signer_name, self.organization))
            .issuer_name(root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, C2PA_CLAIM_SIGNING]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
            .sign(root_key, hashes.SHA256())
        )
        self._retire_current()
        write_atomically(self.key_path, _private_pem(key), mode=0o600)
        write_atomically(self.chain_path, _pem(cert) + _pem(root))

    def _retire_current(self) -> None:
        if not self.chain_path.exists():
            return
        leaf = _load_chain(self.chain_path)[0]
        retired = self.directory / "retired"
        retired.mkdir(exist_ok=True)
        write_atomically(retired / f"signing-{format(leaf.serial_number, 'x')}.pem", _pem(leaf))

    def _needs_renewal(self, leaf: x509.Certificate) -> bool:
        """Renew a day before expiry (or a tenth of the lifetime, when that is shorter)."""
        margin = min(dt.timedelta(days=1), self.lifetime / 10)
        return leaf.not_valid_after_utc - _now() <= margin

    def _is_locally_issued(self, leaf: x509.Certificate) -> bool:
        root = _load_chain(self.root_cert_path)[0]
        try:
            leaf.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    def _callback_chain(self) -> list[x509.Certificate]:
        if self.signing_chain is None:
            raise CredentialsError(
                "HEADSHOT_SIGNING_CALLBACK is set but HEADSHOT_SIGNING_CHAIN is not; "
                "point it at the PEM certificate chain (leaf first) of the key the callback uses"
            )
        try:
            return _load_chain(Path(self.signing_chain))
        except OSError as exc:
            raise CredentialsError(f"cannot read HEADSHOT_SIGNING_CHAIN {self.signing_chain}: {exc.strerror}") from None
        except ValueError:
            raise CredentialsError(f"HEADSHOT_SIGNING_CHAIN {self.signing_chain} holds no PEM certificate") from None

    def _callback_identity(self) -> SigningIdentity:
        chain = self._callback_chain()
        module_name, _, function_name = self.signing_callback.partition(":")
        try:
            sign = getattr(importlib.import_module(module_name), function_name)
        except (ImportError, AttributeError, ValueError):
            raise CredentialsError(
                f"HEADSHOT_SIGNING_CALLBACK={self.signing_callback!r} does not name an importable 'module:function'"
            ) from None
        return SigningIdentity(
            chain_pem=b"".join(_pem(cert) for cert in chain),
            algorithm=_algorithm_for(chain[0].public_key()),
            sign=sign,
            timestamp_url=self.timestamp_url,
        )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )


def _key_usage(*, digital_signature=False, key_cert_sign=False, crl_sign=False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _algorithm_for(public_key) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        algorithms = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
        if public_key.curve.name in algorithms:
            return algorithms[public_key.curve.name]
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, rsa.RSAPublicKey):
        return "ps256"
    raise CredentialsError("unsupported key type for C2PA signing; use an EC P-256/P-384/P-521, Ed25519 or RSA key")


def _check_signing_certificate(cert: x509.Certificate) -> None:
    extensions = cert.extensions
    try:
        is_ca = extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if is_ca:
        raise CredentialsError("the certificate is a CA certificate; C2PA needs an end-entity (CA:FALSE) one")
    try:
        if not extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            raise CredentialsError("the certificate's key usage lacks digitalSignature")
    except x509.ExtensionNotFound:
        raise CredentialsError("the certificate has no key usage extension; C2PA requires digitalSignature") from None
    try:
        ekus = set(extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        ekus = set()
    if not ekus & SIGNING_EKUS:
        raise CredentialsError(
            "the certificate's extended key usage must include emailProtection, documentSigning or the "
            "C2PA claim-signing purpose (1.3.6.1.4.1.62558.2.1)"
        )


def _trial_sign(identity: SigningIdentity) -> None:
    """Sign a tiny image so that certificates c2pa refuses are refused at import, not at first use."""
    import io

    import c2pa
    from PIL import Image

    source = io.BytesIO()
    Image.new("RGB", (16, 16)).save(source, "JPEG")
    source.seek(0)
    created = {
        "action": "c2pa.created",
        "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
    }
    manifest = {
        "claim_generator_info": [{"name": "headshot import check"}],
        "assertions": [{"label": "c2pa.actions.v2", "data": {"actions": [created]}}],
    }
    try:
        c2pa.Builder(manifest).sign(identity.c2pa_signer(), "image/jpeg", source, io.BytesIO())
    except c2pa.C2paError as exc:
        raise CredentialsError(f"c2pa refuses to sign with this certificate: {exc}") from None


def _load_chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
