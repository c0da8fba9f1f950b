import datetime as dt
import stat
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from provenance import CredentialsError, CredentialStore, disclose_image, verify_image
from provenance.credentials import C2PA_CLAIM_SIGNING
from provenance.registry import InMemoryRegistry


def _disclose(data: bytes, identity):
    """Credentials are what these tests are about; each disclosure gets a throwaway registry."""
    return disclose_image(data, identity, InMemoryRegistry())


def _leaf(store: CredentialStore) -> x509.Certificate:
    return x509.load_pem_x509_certificates(store.chain_path.read_bytes())[0]


def test_first_use_creates_ca_and_signer(tmp_path):
    store = CredentialStore(tmp_path / "creds", signer_name="Acme signer", organization="Acme", lifetime=30)
    assert store.describe() == []
    identity = store.signing_identity()
    assert identity.algorithm == "es256"

    for key in ("root-ca.key", "signing.key"):
        assert stat.S_IMODE((tmp_path / "creds" / key).stat().st_mode) == 0o600
    leaf, root = x509.load_pem_x509_certificates(identity.chain_pem)  # leaf first, as c2pa wants
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    ekus = set(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert ekus == {ExtendedKeyUsageOID.EMAIL_PROTECTION, C2PA_CLAIM_SIGNING}
    leaf.verify_directly_issued_by(root)
    lifetime = leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=29) < lifetime <= dt.timedelta(days=30)
    assert root.not_valid_after_utc - leaf.not_valid_after_utc > dt.timedelta(days=10 * 365)

    roles = [info.role for info in store.describe()]
    assert roles == ["local root CA", "signing"]


def test_credentials_are_reused(store):
    first = store.signing_identity()
    second = CredentialStore(store.directory, organization="headshot tests").signing_identity()
    assert first.chain_pem == second.chain_pem
    assert first.private_key_pem == second.private_key_pem


def test_rotation_issues_new_certificate_and_keeps_trust(tmp_path, headshot_jpeg):
    store = CredentialStore(tmp_path / "creds")
    before = store.signing_identity()
    old = _disclose(headshot_jpeg, before)
    info = store.rotate()
    after = store.signing_identity()
    assert after.chain_pem != before.chain_pem
    assert info.sha256_fingerprint != store.describe()[2].sha256_fingerprint  # the retired one differs
    assert [i.role for i in store.describe()] == ["local root CA", "signing", "retired signing"]
    trust = store.trust_anchors()
    assert verify_image(_disclose(headshot_jpeg, after).data, trust).label == "ai_verified"
    assert verify_image(old.data, trust).label == "ai_verified"  # same root: earlier files stay trusted


def test_expired_signer_reads_unverified_not_tampered_and_is_renewed(tmp_path, headshot_jpeg):
    store = CredentialStore(tmp_path / "creds", lifetime=dt.timedelta(seconds=4))
    identity = store.signing_identity()
    signed = _disclose(headshot_jpeg, identity).data
    assert verify_image(signed, store.trust_anchors()).label == "ai_verified"
    time.sleep(max(0.0, (_leaf(store).not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds()) + 1)

    verdict = verify_image(signed, store.trust_anchors())  # expired is not tampered
    assert verdict.label == "ai_unverified_signer"
    assert verdict.c2pa.failure_codes == ["signingCredential.expired"]
    assert verdict.c2pa.unverified_reasons == ["certificate expired"]
    assert verdict.c2pa.unchanged_since_signing is True

    renewed = store.signing_identity()  # expired local certificates are renewed on use
    assert renewed.chain_pem != identity.chain_pem
    assert verify_image(_disclose(headshot_jpeg, renewed).data, store.trust_anchors()).label == "ai_verified"


def test_import_organisation_certificate(tmp_path, foreign_store, headshot_jpeg):
    foreign = foreign_store.signing_identity()
    store = CredentialStore(tmp_path / "creds")
    info = store.import_certificate(foreign.chain_pem, foreign.private_key_pem)
    assert "Elsewhere Signer" in info.subject
    identity = store.signing_identity()
    assert identity.chain_pem == foreign.chain_pem
    verdict = verify_image(_disclose(headshot_jpeg, identity).data, foreign_store.trust_anchors())
    assert verdict.label == "ai_verified"
    assert verdict.c2pa.signer.subject == "Elsewhere Signer"


def test_import_refuses_unusable_certificates(tmp_path, store, foreign_store):
    target = CredentialStore(tmp_path / "creds")
    foreign = foreign_store.signing_identity()
    with pytest.raises(CredentialsError, match="does not belong"):
        target.import_certificate(foreign.chain_pem, store.signing_identity().private_key_pem)
    root_pem = foreign_store.root_cert_path.read_bytes()
    root_key = (foreign_store.directory / "root-ca.key").read_bytes()
    with pytest.raises(CredentialsError, match="CA certificate"):
        target.import_certificate(root_pem, root_key)
    with pytest.raises(CredentialsError, match="no PEM certificate"):
        target.import_certificate(b"not a certificate", root_key)
    assert not target.chain_path.exists()


def test_unreachable_timestamp_authority_fails_loudly(tmp_path, headshot_jpeg):
    store = CredentialStore(tmp_path / "creds", timestamp_url="http://127.0.0.1:9/tsa")
    with pytest.raises(CredentialsError, match=r"timestamp authority http://127\.0\.0\.1:9/tsa could not be reached"):
        _disclose(headshot_jpeg, store.signing_identity())


def test_signing_callback_for_keys_held_elsewhere(tmp_path, monkeypatch, foreign_store, headshot_jpeg):
    """A KMS/HSM stand-in: the private key never reaches headshot, only signatures do."""
    foreign = foreign_store.signing_identity()
    chain = tmp_path / "chain.pem"
    chain.write_bytes(foreign.chain_pem)
    monkeypatch.setenv("TEST_HSM_KEY", foreign.private_key_pem.decode())
    store = CredentialStore(
        tmp_path / "creds", signing_callback="tests.provenance.hsm_signer:sign", signing_chain=chain
    )
    identity = store.signing_identity()
    assert identity.private_key_pem is None and identity.sign is not None
    verdict = verify_image(_disclose(headshot_jpeg, identity).data, foreign_store.trust_anchors())
    assert verdict.label == "ai_verified"
    assert not (tmp_path / "creds" / "signing.key").exists()
    assert store.describe()[0].role == "signing (KMS/HSM callback)"

    broken = CredentialStore(tmp_path / "b", signing_callback="tests.provenance.nothing:sign", signing_chain=chain)
    with pytest.raises(CredentialsError, match="does not name an importable"):
        broken.signing_identity()
    with pytest.raises(CredentialsError, match="HEADSHOT_SIGNING_CHAIN is not"):
        CredentialStore(tmp_path / "c", signing_callback="tests.provenance.hsm_signer:sign").signing_identity()


def test_extra_trust_anchors(tmp_path, store, foreign_store, headshot_jpeg):
    signed = _disclose(headshot_jpeg, foreign_store.signing_identity()).data
    assert verify_image(signed, store.trust_anchors()).label == "ai_unverified_signer"
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(foreign_store.root_cert_path.read_bytes())
    assert verify_image(signed, store.trust_anchors(extra=anchors)).label == "ai_verified"
    anchors.write_text("garbage")
    with pytest.raises(CredentialsError, match="holds no PEM certificate"):
        store.trust_anchors(extra=anchors)


def test_keys_are_never_described(store):
    text = repr(store.describe())
    key = serialization.load_pem_private_key(store.signing_identity().private_key_pem, None)
    assert "PRIVATE" not in text
    assert format(key.private_numbers().private_value, "x") not in text
