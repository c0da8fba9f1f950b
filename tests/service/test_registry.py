import time

import pytest
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
