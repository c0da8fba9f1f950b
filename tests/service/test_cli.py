import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from typer.testing import CliRunner

from service.cli import app
from tests.conftest import CONFORMANCE, FACES, encode, face_image


@pytest.fixture
def run(tmp_path, monkeypatch, database_url):
    """The CLI on SQLite and on PostgreSQL (keys and the registry live in the database)."""
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HEADSHOT_DATABASE_URL", database_url)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(arg) for arg in args])


def test_disclose_then_verify_json(run, tmp_path):
    source = tmp_path / "generated.png"
    source.write_bytes(encode(face_image(size=512), "PNG"))
    output = tmp_path / "out" / "disclosed.png"
    result = run(
        "disclose",
        source,
        "-o",
        output,
        "--reference",
        FACES / "img2.jpg",
        "--reference",
        FACES / "img3.jpg",
        "--generator",
        "SDXL 1.0",
        "--model-hash",
        "sdxl=00ff00ff00ff",
    )
    assert result.exit_code == 0, result.output
    assert "2 reference photo(s)" in result.output

    result = run("verify", "--json", output, FACES / "img1.jpg", CONFORMANCE / "adobe-20220124-E-sig-CA.jpg")
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.output)
    assert [v["label"] for v in verdicts] == ["ai_verified", "no_provenance", "invalid_credentials"]
    assert [v["file"] for v in verdicts] == [
        str(output),
        str(FACES / "img1.jpg"),
        str(CONFORMANCE / "adobe-20220124-E-sig-CA.jpg"),
    ]
    first = verdicts[0]
    assert set(first) == {
        "file",
        "label",
        "ai_generated",
        "summary",
        "c2pa",
        "metadata",
        "evidence",
        "recovered_manifest",
        "recovered_credentials",
        "signals",
    }
    assert first["recovered_manifest"] is None
    assert first["c2pa"]["state"] == "trusted"
    assert len(first["c2pa"]["ingredients"]) == 2
    assert verdicts[2]["c2pa"]["failure_codes"] == ["claimSignature.mismatch"]


def test_verify_exit_codes(run, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = run("verify", "--json", FACES / "img1.jpg", broken)
    assert result.exit_code == 1
    verdicts = json.loads(result.output)
    assert verdicts[0]["label"] == "no_provenance"  # the other files are still verified
    assert verdicts[1]["file"] == str(broken)
    assert "corrupt or truncated" in verdicts[1]["error"]

    assert run("verify").exit_code == 2  # usage error: no file given
    human = run("verify", FACES / "img1.jpg")
    assert human.exit_code == 0 and "no_provenance" in human.output


def test_disclose_errors_are_clear(run, tmp_path):
    result = run("disclose", tmp_path / "missing.png", "-o", tmp_path / "out.png")
    assert result.exit_code == 1
    assert "missing.png: no such file" in result.output
    result = run("disclose", FACES / "img1.jpg", "-o", tmp_path / "out.jpg", "--model-hash", "oops")
    assert result.exit_code == 1 and "NAME=HEX" in result.output
    assert not (tmp_path / "out.jpg").exists()


def test_credentials_commands_never_print_keys(run, tmp_path):
    assert "created on first use" in run("credentials", "show").output
    run("disclose", FACES / "img1.jpg", "-o", tmp_path / "out.jpg")
    shown = run("credentials", "show")
    assert shown.exit_code == 0
    assert "local root CA" in shown.output and "SHA-256" in shown.output
    rotated = run("credentials", "rotate")
    assert rotated.exit_code == 0 and "new signing certificate" in rotated.output
    assert "retired signing" in run("credentials", "show").output
    key_body = (tmp_path / "data" / "credentials" / "signing.key").read_text().splitlines()[1]
    for result in (shown, rotated):
        assert "PRIVATE KEY" not in result.output and key_body not in result.output


def test_credentials_import(run, tmp_path, foreign_store):
    foreign = foreign_store.signing_identity()
    (tmp_path / "chain.pem").write_bytes(foreign.chain_pem)
    (tmp_path / "key.pem").write_bytes(foreign.private_key_pem)
    result = run("credentials", "import", tmp_path / "chain.pem", tmp_path / "key.pem")
    assert result.exit_code == 0, result.output
    assert "Elsewhere Signer" in result.output
    bad = run("credentials", "import", tmp_path / "chain.pem", tmp_path / "nokey.pem")
    assert bad.exit_code == 1 and "cannot read" in bad.output


def test_registry_commands(run, tmp_path):
    output = tmp_path / "disclosed.jpg"
    assert run("disclose", FACES / "img1.jpg", "-o", output).exit_code == 0
    stats = run("registry", "stats")
    assert stats.exit_code == 0
    assert "images          1 (1 watermarked, 1 with a face hash)" in stats.output

    stripped = tmp_path / "stripped.jpg"
    stripped.write_bytes(encode(face_image_from(output).resize((691, 934)), "JPEG", quality=80))  # half size
    lookup = run("registry", "lookup", "--json", stripped)
    assert lookup.exit_code == 0, lookup.output
    found = json.loads(lookup.output)
    assert found["match"]["manifest"]["label"] == found["match"]["manifest_label"]
    assert found["findings"][0]["source"] == "watermark"

    verdict = json.loads(run("verify", "--json", stripped).output)[0]
    assert verdict["label"] == "ai_soft_binding"
    assert verdict["recovered_manifest"]["label"] == found["match"]["manifest_label"]

    none = run("registry", "lookup", FACES / "img2.jpg")
    assert none.exit_code == 0 and "no registered disclosure matches" in none.output


def face_image_from(path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def test_replicas_share_credentials_named_by_settings(run, tmp_path, monkeypatch):
    shared = tmp_path / "shared-credentials"
    monkeypatch.setenv("HEADSHOT_CREDENTIALS_DIR", str(shared))
    created = run("credentials", "init")
    assert created.exit_code == 0 and "local root CA" in created.output and str(shared) in created.output
    assert (shared / "root-ca.pem").exists() and not (tmp_path / "data" / "credentials").exists()
    root = x509.load_pem_x509_certificate((shared / "root-ca.pem").read_bytes())
    assert root.fingerprint(hashes.SHA256()).hex(":").upper() in created.output  # as printed, no emoji for ":AB:"
    run("disclose", FACES / "img1.jpg", "-o", tmp_path / "out.jpg")
    monkeypatch.setenv("HEADSHOT_DATA_DIR", str(tmp_path / "another-replica"))  # nothing else in common
    verdict = json.loads(run("verify", "--json", tmp_path / "out.jpg").output)[0]
    assert verdict["label"] == "ai_verified" and verdict["c2pa"]["state"] == "trusted"


def test_worker_and_serve_refuse_what_cannot_work(run, monkeypatch, tmp_path):
    no_broker = run("worker", "--queues", "gpu")
    assert no_broker.exit_code == 1 and "HEADSHOT_BROKER_URL" in no_broker.output
    monkeypatch.setenv("HEADSHOT_BROKER_URL", "redis://127.0.0.1:6379/14")
    unknown = run("worker", "--queues", "gpu,tpu")
    assert unknown.exit_code == 1 and "unknown queue tpu" in unknown.output
    monkeypatch.setenv("HEADSHOT_DATABASE_URL", f"sqlite:///{tmp_path / 'one-machine.db'}")
    replicas = run("serve", "--workers", "2")
    assert replicas.exit_code == 1 and "PostgreSQL" in replicas.output
