import io
import time

import pytest
from PIL import Image
from sqlalchemy.exc import IntegrityError

from provenance import disclose_image
from provenance.fingerprint import Fingerprints
from provenance.registry import RegistryEntry
from service.database import engine_for
from service.registry import DatabaseRegistry
from tests.conftest import encode, face_image


def _entry(payload: int, frame: int, face: int | None) -> RegistryEntry:
    return RegistryEntry(
        payload=payload,
        manifest_label=f"urn:c2pa:{payload:x}",
        fingerprints=Fingerprints(frame=(frame,) * 7, face=face),
        signed_sha256="ab" * 32,
        mime_type="image/png",
        manifest={"label": f"urn:c2pa:{payload:x}", "assertions": []},
    )


def test_round_trip_of_64_bit_values(database_url):
    registry = DatabaseRegistry(engine_for(database_url))
    high = (1 << 64) - 5  # above the signed BIGINT range: stored as a negative number
    registry.add(_entry(high, frame=(1 << 63) + 7, face=(1 << 64) - 1))
    found = registry.find_payload(high)
    assert found.payload == high
    assert found.fingerprints.frame == ((1 << 63) + 7,) * 7
    assert found.fingerprints.face == (1 << 64) - 1
    assert found.manifest["label"] == f"urn:c2pa:{high:x}"
    assert registry.find_payload(high - 1) is None

    hits = registry.candidates(Fingerprints(frame=((1 << 63) + 7 ^ 0b111,), face=None), 10, 12)
    assert [(hit.entry.payload, hit.frame_distance, hit.face_distance) for hit in hits] == [(high, 3, None)]
    far = ((1 << 63) + 7) ^ ((1 << 40) - 1)  # 40 bits away
    assert registry.candidates(Fingerprints(frame=(far,), face=None), 10, 12) == []


def test_every_process_sees_new_rows(database_url):
    first = DatabaseRegistry(engine_for(database_url))
    second = DatabaseRegistry(engine_for(database_url), max_staleness=0.2)  # e.g. another API replica
    first.add(_entry(42, frame=0xFFFF, face=0x1234))
    assert second.find_payload(42) is not None  # payloads: always current
    time.sleep(0.25)  # fingerprints: current within max_staleness
    hits = second.candidates(Fingerprints(frame=(0xFFFF,), face=0x1234), 10, 12)
    assert [(hit.entry.payload, hit.frame_distance, hit.face_distance) for hit in hits] == [(42, 0, 0)]
    assert second.count() == 1
    stats = second.stats()
    assert stats["images"] == 1 and stats["with_face_hash"] == 1 and stats["formats"] == {"image/png": 1}


def test_duplicate_payload_is_refused(database_url):
    registry = DatabaseRegistry(engine_for(database_url))
    registry.add(_entry(7, 1, None))
    with pytest.raises(IntegrityError):
        registry.add(_entry(7, 2, None))
    assert registry.count() == 1


def test_disclosure_is_recorded_in_the_database(database_url, store):
    registry = DatabaseRegistry(engine_for(database_url))
    disclosure = disclose_image(encode(face_image(size=512), "JPEG"), store.signing_identity(), registry)
    entry = DatabaseRegistry(engine_for(database_url)).find_payload(disclosure.payload)
    assert entry.manifest_label == disclosure.manifest_label
    assert entry.manifest == disclosure.manifest
    assert entry.fingerprints == disclosure.fingerprints
    assert entry.watermarked


def test_pdq_candidates_in_any_orientation(database_url):
    """A registered image's PDQ hash is found again from a mirrored, quarter-turned copy (8 query variants)."""
    from PIL import Image

    from provenance.fingerprint import fingerprint_for_query, fingerprint_for_registry

    registry = DatabaseRegistry(engine_for(database_url))
    image = face_image("img9.jpg", 384)
    registered = fingerprint_for_registry(image)
    registry.add(RegistryEntry(**{**vars(_entry(9, 1, None)), "fingerprints": registered}))
    turned = image.transpose(Image.Transpose.ROTATE_90).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    query = fingerprint_for_query(turned)
    assert len(query.pdq) == 8
    hits = registry.candidates(Fingerprints(frame=(1 << 40,), face=None, pdq=query.pdq), 10, 12, 40)
    assert [hit.entry.payload for hit in hits] == [9] and hits[0].pdq_distance <= 4
    assert registry.find_payload(9).fingerprints.pdq == registered.pdq
    unrelated = fingerprint_for_query(face_image("img30.jpg", 384))
    assert registry.candidates(Fingerprints(frame=(1 << 40,), face=None, pdq=unrelated.pdq), 10, 12, 40) == []


@pytest.mark.parametrize("engine_kind", ["sqlite", "postgresql"])
def test_migration_0006_keeps_tile_v1_images_verifiable(store, tmp_path, engine_kind):
    """A registry made before 0006 holds tile-v1 images: after the upgrade its rows say so, and a stripped copy
    of one still reads ai_soft_binding through the database."""
    import json

    import sqlalchemy as sa
    from alembic import command

    from provenance import verify_image
    from provenance.registry import InMemoryRegistry
    from service.database import _config
    from tests.conftest import fresh_postgres_database

    old = disclose_image(
        encode(face_image("img13.jpg", 512), "JPEG", quality=92),
        store.signing_identity(),
        InMemoryRegistry(),
        watermark_algorithm="tile-v1",
    )

    def check(url: str) -> None:
        engine = sa.create_engine(url)
        with engine.begin() as connection:
            config = _config()
            config.attributes["connection"] = connection
            command.upgrade(config, "0005")
            connection.execute(
                sa.text(
                    "INSERT INTO registered_images (payload, manifest_label, frame_hashes, face_hash, signed_sha256, "
                    "mime_type, watermarked, manifest_json, created_at) VALUES (:payload, :label, :frames, :face, "
                    "'ab', 'image/jpeg', :yes, :manifest, '2026-11-30 12:00:00')"
                ),
                {
                    "payload": old.payload - (1 << 64) if old.payload >= 1 << 63 else old.payload,
                    "label": old.manifest_label,
                    "frames": b"".join(value.to_bytes(8, "big") for value in old.fingerprints.frame),
                    "face": None,
                    "yes": True,
                    "manifest": json.dumps(old.manifest),
                },
            )
            command.upgrade(config, "head")
        with engine.connect() as connection:
            row = connection.execute(sa.text("SELECT algorithm, pdq_hash FROM registered_images")).one()
        assert tuple(row) == ("tile-v1", None)
        engine.dispose()
        upgraded = engine_for(url)
        registry = DatabaseRegistry(upgraded)
        assert registry.find_payload(old.payload).algorithm == "tile-v1"
        stripped = encode(Image.open(io.BytesIO(old.data)).convert("RGB"), "JPEG", quality=85)
        verdict = verify_image(stripped, store.trust_anchors(), registry=registry)
        assert verdict.label == "ai_soft_binding"
        assert verdict.recovered_manifest["label"] == old.manifest_label
        assert any(e.source == "watermark" and "tile-v1 watermark decoded" in e.detail for e in verdict.evidence)
        upgraded.dispose()

    if engine_kind == "sqlite":
        check(f"sqlite:///{tmp_path / 'old.db'}")
    else:
        with fresh_postgres_database() as url:
            check(url)
