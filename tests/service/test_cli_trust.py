"""`headshot trust list` and `headshot trust update`, and the trust source in `headshot verify --json`."""

import json

from typer.testing import CliRunner

from service.cli import app
from tests.conftest import SHARED_DATA


def _run(tmp_path, *args, **env):
    environment = {"HEADSHOT_DATA_DIR": str(tmp_path / "data"), **env}
    return CliRunner().invoke(app, [str(arg) for arg in args], env=environment)


def test_list_update_and_verify(tmp_path, foreign_store):
    foreign_store.signing_identity()  # creates its CA
    result = _run(tmp_path, "credentials", "init")
    assert result.exit_code == 0, result.output
    extra = tmp_path / "partner.pem"
    extra.write_bytes(foreign_store.root_cert_path.read_bytes())

    result = _run(tmp_path, "trust", "list", "--json", HEADSHOT_TRUST_ANCHORS=str(extra))
    assert result.exit_code == 0, result.output
    anchors = json.loads(result.output)
    counts = {}
    for anchor in anchors:
        counts[(anchor["source"], anchor["purpose"])] = counts.get((anchor["source"], anchor["purpose"]), 0) + 1
        assert set(anchor) == {"source", "purpose", "subject", "sha256_fingerprint", "not_after", "expired"}
    assert counts == {
        ("c2pa-trust-list", "signing"): 30,
        ("c2pa-trust-list", "time-stamping"): 22,
        ("installation", "signing"): 1,
        ("user", "signing"): 1,
    }
    text = _run(tmp_path, "trust", "list").output
    assert "52 from c2pa-trust-list, 1 from installation" in text and "Google C2PA Root CA G3" in text

    verdict = json.loads(
        _run(tmp_path, "verify", "--json", SHARED_DATA / "real-ai-c2pa" / "google-portrait.png").output
    )
    assert (verdict[0]["label"], verdict[0]["c2pa"]["trust_source"]) == ("ai_verified", "c2pa-trust-list")

    # A newer list replaces the bundled one: here, one that lacks Google's anchors.
    newer = tmp_path / "newer.pem"
    newer.write_bytes(foreign_store.root_cert_path.read_bytes())
    result = _run(tmp_path, "trust", "update", newer)
    assert result.exit_code == 0 and "C2PA trust list replaced: 1 anchors" in result.output
    anchors = json.loads(_run(tmp_path, "trust", "list", "--json").output)
    assert sum(a["source"] == "c2pa-trust-list" and a["purpose"] == "signing" for a in anchors) == 1
    verdict = json.loads(
        _run(tmp_path, "verify", "--json", SHARED_DATA / "real-ai-c2pa" / "google-portrait.png").output
    )
    assert verdict[0]["label"] == "ai_verified"  # c2pa-rs pools anchors: Google's root is on the TSA list too
    result = _run(tmp_path, "trust", "update", SHARED_DATA / "c2pa-trust-list" / "C2PA-TRUST-LIST.json")
    assert result.exit_code == 0 and "30 anchors" in result.output

    broken = tmp_path / "broken.pem"
    broken.write_text("not a certificate")
    result = _run(tmp_path, "trust", "update", broken, "--tsa")
    assert result.exit_code == 1 and "holds no PEM certificate" in result.output
    off = _run(tmp_path, "trust", "list", "--json", HEADSHOT_C2PA_TRUST_LIST="false")
    assert {a["source"] for a in json.loads(off.output)} == {"installation"}
