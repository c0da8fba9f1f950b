"""RFC 3161 time-stamps: c2pa stamps the signature through our TSA, and the stamp outlives the certificate."""

import dataclasses
import datetime as dt
import io
import time
import urllib.request

import c2pa
import pytest
from asn1crypto import tsp
from cryptography import x509

from provenance import CredentialStore, disclose_image, verify_image
from provenance.registry import InMemoryRegistry
from tests.provenance.tsa_server import POLICY, TimestampAuthority


def _disclose(data: bytes, identity):
    """Credentials are what these tests are about; each disclosure gets a throwaway registry."""
    return disclose_image(data, identity, InMemoryRegistry())


@pytest.fixture
def tsa():
    with TimestampAuthority().serve() as authority:
        yield authority


def _anchors_with_tsa(store: CredentialStore, tsa: TimestampAuthority, tmp_path):
    """The store's root plus the TSA's root: c2pa checks time-stamp signers against the same trust anchors."""
    pem = tmp_path / "tsa-root.pem"
    pem.write_bytes(tsa.root_pem)
    return store.trust_anchors(extra=pem)


def test_disclosure_is_time_stamped_by_the_authority(tmp_path, tsa, headshot_jpeg):
    store = CredentialStore(tmp_path / "creds", timestamp_url=tsa.url)
    signed = _disclose(headshot_jpeg, store.signing_identity()).data

    assert len(tsa.requests) == 1
    request = tsa.requests[0]
    assert request["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert request["cert_req"].native is True

    anchors = _anchors_with_tsa(store, tsa, tmp_path)
    with c2pa.Reader("image/jpeg", io.BytesIO(signed), context=anchors.c2pa_context()) as reader:
        signature_info = reader.get_active_manifest()["signature_info"]
        results = reader.get_validation_results()["activeManifest"]
    assert dt.datetime.fromisoformat(signature_info["time"]) == tsa.issued[0]
    assert {"timeStamp.validated", "timeStamp.trusted"} <= {item["code"] for item in results["success"]}
    assert results["failure"] == []
    verdict = verify_image(signed, anchors)
    assert verdict.label == "ai_verified"
    assert dt.datetime.fromisoformat(verdict.c2pa.time_stamped_at) == tsa.issued[0]

    unstamped = _disclose(headshot_jpeg, dataclasses.replace(store.signing_identity(), timestamp_url=None)).data
    with c2pa.Reader("image/jpeg", io.BytesIO(unstamped), context=anchors.c2pa_context()) as reader:
        assert "time" not in reader.get_active_manifest()["signature_info"]
    assert len(tsa.requests) == 1


def test_time_stamp_keeps_manifest_valid_after_certificate_expiry(tmp_path, tsa, headshot_jpeg):
    store = CredentialStore(tmp_path / "creds", lifetime=dt.timedelta(seconds=4), timestamp_url=tsa.url)
    identity = store.signing_identity()
    stamped = _disclose(headshot_jpeg, identity).data
    unstamped = _disclose(headshot_jpeg, dataclasses.replace(identity, timestamp_url=None)).data
    assert len(tsa.requests) == 1

    with_tsa = _anchors_with_tsa(store, tsa, tmp_path)
    assert verify_image(stamped, with_tsa).label == "ai_verified"
    assert verify_image(unstamped, with_tsa).label == "ai_verified"

    leaf = x509.load_pem_x509_certificates(identity.chain_pem)[0]
    time.sleep(max(0.0, (leaf.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds()) + 1)
    assert leaf.not_valid_after_utc < dt.datetime.now(dt.UTC)

    verdict = verify_image(stamped, with_tsa)
    assert verdict.label == "ai_verified", verdict.c2pa.failure_codes
    assert verdict.c2pa.failure_codes == []

    verdict = verify_image(unstamped, with_tsa)  # expired without a time-stamp: unconfirmed, not tampered
    assert verdict.label == "ai_unverified_signer"
    assert verdict.c2pa.failure_codes == ["signingCredential.expired"]
    assert verdict.c2pa.unverified_reasons == ["certificate expired"]

    # A stamp from an authority outside the trust anchors does not vouch for the signing time.
    verdict = verify_image(stamped, store.trust_anchors())
    assert verdict.label == "ai_unverified_signer"
    assert "certificate expired" in verdict.c2pa.unverified_reasons
    assert verdict.c2pa.failure_codes == ["signingCredential.expired"]


def test_authority_answers_rfc3161(tsa):
    """The server side on its own: a granted reply whose TSTInfo echoes the imprint and nonce."""
    imprint = {"hash_algorithm": {"algorithm": "sha256"}, "hashed_message": bytes(range(32))}
    query = tsp.TimeStampReq({"version": "v1", "message_imprint": imprint, "nonce": 42, "cert_req": True})
    post = urllib.request.Request(
        tsa.url, data=query.dump(), headers={"Content-Type": "application/timestamp-query"}, method="POST"
    )
    with urllib.request.urlopen(post, timeout=5) as response:
        assert response.headers["Content-Type"] == "application/timestamp-reply"
        reply = tsp.TimeStampResp.load(response.read())
    assert reply["status"]["status"].native == "granted"
    signed_data = reply["time_stamp_token"]["content"]
    info = signed_data["encap_content_info"]["content"].parsed
    assert info["message_imprint"].native == tsp.MessageImprint(imprint).native
    assert info["nonce"].native == 42
    assert info["policy"].native == POLICY
    assert signed_data["certificates"][0].chosen.subject.native["common_name"] == "headshot test TSA"
