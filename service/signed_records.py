"""Signed records: JSON documents an auditor can check offline, signed with this installation's audit key.

The key is Ed25519, created on first use under the credentials directory, like the C2PA signing key:
`audit/audit-key.pem` (PKCS#8, mode 0600, never printed or served). `headshot audit key --rotate` makes a
new one and keeps the old public key in `audit/retired/<kid>.json`, so what it signed still verifies. The
public keys, current and retired, are a JWKS at `/.well-known/jwks.json` and in `headshot audit key`; a
key's `kid` is its RFC 7638 thumbprint.

A signed document is the document as it always was plus one field, `jws`: a JWS in compact serialisation
(RFC 7515) with `alg` Ed25519 (RFC 9864's name for EdDSA on that curve), `kid`, `typ`
(`headshot-<record type>+json`) and `iat` (when it was signed, Unix seconds) in its protected header, and as
its payload the canonical JSON (service/audit_chain.py) of every other field. A verifier checks the
signature with the key named by `kid`, then that the fields beside `jws` are exactly the payload: an edited,
added or removed field is rejected. Any JOSE library can check the signature; `headshot audit verify-export`
does both checks.
"""

import datetime as dt
import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provenance.files import write_atomically
from service.audit_chain import canonical

ALGORITHM = "Ed25519"
RECORD_TYPES = ("subject-export", "headshot-chain", "training-record")
MAX_DOCUMENT_BYTES = 64_000_000


class RecordError(ValueError):
    """A document is not a valid signed record; the message says what is wrong."""


@dataclass(frozen=True)
class VerifiedRecord:
    record_type: str
    kid: str
    signed_at: dt.datetime


def _registry():
    from joserfc.jws import JWSRegistry
    from joserfc.registry import HeaderParameter

    class RecordRegistry(JWSRegistry):
        max_payload_length = MAX_DOCUMENT_BYTES

    return RecordRegistry(
        header_registry={"iat": HeaderParameter("When the record was signed", "int", required=True)},
        algorithms=[ALGORITHM],
    )


class AuditKeyStore:
    """Creates, loads and rotates the installation's audit key (under `<credentials dir>/audit/`)."""

    def __init__(self, credentials_dir: Path):
        self.directory = Path(credentials_dir) / "audit"

    @property
    def key_path(self) -> Path:
        return self.directory / "audit-key.pem"

    @property
    def retired_dir(self) -> Path:
        return self.directory / "retired"

    def signing_key(self):
        """The current private key (an OKPKey with its kid); created on first use."""
        from joserfc.jwk import OKPKey

        with self._locked():
            if not self.key_path.exists():
                self._write_new_key()
            key = OKPKey.import_key(self.key_path.read_bytes())
        key.ensure_kid()
        return key

    def rotate(self) -> str:
        """A new key signs from now on; the old public key stays in the JWKS. Returns the new kid."""
        from joserfc.jwk import OKPKey

        with self._locked():
            if self.key_path.exists():
                old = OKPKey.import_key(self.key_path.read_bytes())
                self.retired_dir.mkdir(exist_ok=True)
                public = _public_jwk(old)
                write_atomically(self.retired_dir / f"{public['kid']}.json", json.dumps(public, indent=2).encode())
            self._write_new_key()
        return self.signing_key().kid

    def jwks(self, create: bool = True) -> dict:
        """The public keys, current first; with `create`, the key is made if there is none yet."""
        from joserfc.jwk import OKPKey

        keys = []
        if create:
            keys.append(_public_jwk(self.signing_key()))
        elif self.key_path.exists():
            keys.append(_public_jwk(OKPKey.import_key(self.key_path.read_bytes())))
        if self.retired_dir.is_dir():
            retired = sorted(self.retired_dir.glob("*.json"), key=lambda path: path.stat().st_mtime, reverse=True)
            keys.extend(json.loads(path.read_text()) for path in retired)
        return {"keys": keys}

    def sign(self, document: dict, record_type: str) -> dict:
        return sign_record(document, record_type, self.signing_key())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write_new_key(self) -> None:
        from joserfc.jwk import OKPKey

        write_atomically(self.key_path, OKPKey.generate_key("Ed25519").as_pem(private=True), mode=0o600)


def _public_jwk(key) -> dict:
    return {**key.as_dict(private=False), "kid": key.thumbprint(), "alg": ALGORITHM, "use": "sig"}


def sign_record(document: dict, record_type: str, key) -> dict:
    """`document` with its `jws` (see the module's docstring)."""
    from joserfc import jws

    if record_type not in RECORD_TYPES:
        raise ValueError(f"unknown record type {record_type!r}")
    body = {name: value for name, value in document.items() if name != "jws"}
    header = {
        "alg": ALGORITHM,
        "kid": key.kid or key.thumbprint(),
        "typ": f"headshot-{record_type}+json",
        "iat": int(dt.datetime.now(dt.UTC).timestamp()),
    }
    return {**body, "jws": jws.serialize_compact(header, canonical(body), key, registry=_registry())}


def verify_record(document: object, jwks: dict) -> VerifiedRecord:
    """Check a signed document against the public keys in `jwks`; RecordError says why it is not valid."""
    from joserfc import jws
    from joserfc.errors import JoseError
    from joserfc.jwk import OKPKey

    if not isinstance(document, dict) or not isinstance(document.get("jws"), str):
        raise RecordError("this is not a signed record: it has no `jws` field")
    registry = _registry()
    try:
        signed = jws.extract_compact(document["jws"].encode(), registry=registry)
        header = signed.headers()
    except (JoseError, ValueError) as exc:
        raise RecordError(f"its `jws` is not a JWS compact serialisation ({exc})") from None
    kid, record_type = header.get("kid"), str(header.get("typ", "")).removeprefix("headshot-").removesuffix("+json")
    if header.get("alg") != ALGORITHM or record_type not in RECORD_TYPES:
        raise RecordError(f"its `jws` is not a headshot record (alg {header.get('alg')}, typ {header.get('typ')})")
    public = next((key for key in jwks.get("keys", []) if key.get("kid") == kid), None)
    if public is None:
        raise RecordError(f"it was signed by key {kid}, which is not among the keys given: pass that JWKS (--jwks)")
    try:
        valid = jws.validate_compact(signed, OKPKey.import_key(public), registry=registry)
    except (JoseError, ValueError) as exc:
        raise RecordError(f"its signature cannot be checked ({exc})") from None
    if not valid:
        raise RecordError(f"its signature does not verify with key {kid}: the `jws` was altered")
    try:
        payload = json.loads(signed.payload)
    except ValueError:
        raise RecordError("its signed payload is not JSON") from None
    body = {name: value for name, value in document.items() if name != "jws"}
    if canonical(body) != canonical(payload):
        raise RecordError(f"the document differs from what was signed: {_first_difference(payload, body)}")
    return VerifiedRecord(record_type, kid, dt.datetime.fromtimestamp(header["iat"], dt.UTC))


def _first_difference(signed: object, given: object, path: str = "") -> str:
    if isinstance(signed, dict) and isinstance(given, dict):
        for name in sorted(set(signed) | set(given)):
            where = f"{path}.{name}" if path else name
            if name not in given:
                return f"`{where}` was removed"
            if name not in signed:
                return f"`{where}` was added"
            if canonical({"v": signed[name]}) != canonical({"v": given[name]}):
                return _first_difference(signed[name], given[name], where)
    if isinstance(signed, list) and isinstance(given, list):
        if len(signed) != len(given):
            return f"`{path}` has {len(given)} items instead of {len(signed)}"
        for index, (one, other) in enumerate(zip(signed, given, strict=True)):
            if canonical({"v": one}) != canonical({"v": other}):
                return _first_difference(one, other, f"{path}[{index}]")
    return f"`{path}` was changed"
