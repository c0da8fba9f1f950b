"""The official C2PA trust list, where a signer's trust comes from, and expired-is-not-tampered on real files."""

import base64
import json

import pytest
from cryptography import x509

from provenance import disclose_image, verify_image, verify_path
from provenance.registry import InMemoryRegistry
from provenance.trust import (
    BUNDLED_TRUST_LISTS,
    TrustAnchors,
    TrustListError,
    official_trust_list,
    update_trust_list,
)
from tests.conftest import SHARED_DATA

REAL_AI = SHARED_DATA / "real-ai-c2pa"
SHIPPED = SHARED_DATA / "c2pa-trust-list"


@pytest.fixture(scope="module")
def official() -> TrustAnchors:
    return official_trust_list()


def test_bundled_lists_are_the_official_files_with_their_attribution(official):
    for name in ("C2PA-TRUST-LIST.pem", "C2PA-TSA-TRUST-LIST.pem", "C2PA-TRUST-LIST.json"):
        assert (BUNDLED_TRUST_LISTS / name).read_bytes() == (SHIPPED / name).read_bytes()
    notice = (BUNDLED_TRUST_LISTS / "NOTICE.md").read_text()
    assert "CC BY 4.0" in notice and "Coalition for Content Provenance and Authenticity" in notice
    purposes = [anchor.purpose for anchor in official.anchors]
    assert (purposes.count("signing"), purposes.count("time-stamping")) == (30, 22)
    assert {anchor.source for anchor in official.anchors} == {"c2pa-trust-list"}
    google = [a for a in official.anchors if a.subject.startswith("CN=Google C2PA Media Services 1P ICA G3")]
    assert google and len(google[0].sha256_fingerprint) == 95  # 32 bytes as XX:XX:...


def test_google_image_is_verified_through_the_c2pa_trust_list(official):
    verdict = verify_path(REAL_AI / "google-portrait.png", official)
    assert verdict.label == "ai_verified"
    assert verdict.c2pa.state == "trusted"
    assert verdict.c2pa.trust_source == "c2pa-trust-list"
    assert verdict.c2pa.signer.subject == "Google Media Processing Services"
    assert verdict.c2pa.time_stamped_at.startswith("2026-01-04")  # its certificate expired since: the stamp counts
    assert "on the C2PA trust list" in verdict.summary

    # Without the list the same file is unconfirmed, never tampered.
    verdict = verify_path(REAL_AI / "google-portrait.png", TrustAnchors())
    assert verdict.label == "ai_unverified_signer"
    assert verdict.c2pa.unchanged_since_signing is True


def test_openai_image_is_declared_ai_by_an_unconfirmed_signer_not_tampered(official):
    verdict = verify_path(REAL_AI / "openai-chatgpt.png", official)
    assert verdict.label == "ai_unverified_signer"
    assert verdict.ai_generated is True
    assert verdict.c2pa.state == "valid-untrusted"
    assert verdict.c2pa.trust_source is None
    assert verdict.c2pa.unverified_reasons == ["certificate expired", "not on the trust list"]
    assert verdict.c2pa.unchanged_since_signing is True
    assert (
        "signed by Truepic Lens CLI in Sora, issued by OpenAI; certificate expired and not on the trust list; "
        "the image is unchanged since signing" in verdict.summary
    )
    assert "changed after signing" not in verdict.summary


def test_trust_source_tells_installation_from_operator(tmp_path, store, foreign_store, headshot_jpeg, official):
    own = disclose_image(headshot_jpeg, store.signing_identity(), InMemoryRegistry()).data
    verdict = verify_image(own, official + store.trust_anchors())
    assert (verdict.label, verdict.c2pa.trust_source) == ("ai_verified", "installation")
    assert "this installation's own certificate authority" in verdict.summary

    foreign = disclose_image(headshot_jpeg, foreign_store.signing_identity(), InMemoryRegistry()).data
    extra = tmp_path / "anchors.pem"
    extra.write_bytes(foreign_store.root_cert_path.read_bytes())
    verdict = verify_image(foreign, official + store.trust_anchors(extra=extra))
    assert (verdict.label, verdict.c2pa.trust_source) == ("ai_verified", "user")
    assert "a certificate this server's operator added" in verdict.summary


def test_update_replaces_the_bundled_list(tmp_path, foreign_store):
    directory = tmp_path / "trust-lists"
    assert official_trust_list(directory).pem == official_trust_list().pem  # nothing installed: the bundled one

    newer = tmp_path / "newer.pem"
    newer.write_bytes(foreign_store.root_cert_path.read_bytes())
    update_trust_list(newer, directory)
    signing = [a for a in official_trust_list(directory).anchors if a.purpose == "signing"]
    assert [a.subject for a in signing] == [x509.load_pem_x509_certificate(newer.read_bytes()).subject.rfc4514_string()]

    # The list's JSON form (LoTE) is read as well: the same 30 anchors as the PEM.
    installed = update_trust_list(SHIPPED / "C2PA-TRUST-LIST.json", directory)
    shipped = TrustAnchors.from_pem((SHIPPED / "C2PA-TRUST-LIST.pem").read_bytes(), "c2pa-trust-list")
    assert sorted(a.sha256_fingerprint for a in installed.anchors) == sorted(
        a.sha256_fingerprint for a in shipped.anchors
    )

    for content, message in ((b"garbage", "holds no PEM certificate"), (b'{"LoTE": {}}', "not a C2PA trust list")):
        broken = tmp_path / "broken"
        broken.write_bytes(content)
        with pytest.raises(TrustListError, match=message):
            update_trust_list(broken, directory)
    with pytest.raises(TrustListError, match="cannot read"):
        update_trust_list(tmp_path / "missing.pem", directory)
    assert len(official_trust_list(directory).anchors) == 30 + 22  # a refused file leaves the list as it was


def test_lote_values_are_the_certificates_of_the_pem(official):
    document = json.loads((SHIPPED / "C2PA-TRUST-LIST.json").read_text())
    first = document["LoTE"]["TrustedEntitiesList"][0]["TrustedEntityServices"][0]["ServiceInformation"]
    der = base64.b64decode(first["ServiceDigitalIdentity"]["X509Certificates"][0]["val"])
    subject = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    assert subject in {a.subject for a in official.anchors}
