"""The soft-binding registry: every disclosed image's watermark payload, fingerprints and manifest.

`provenance` only needs the small `SoftBindingRegistry` protocol; `service/` passes a database-backed
one, and `InMemoryRegistry` serves notebooks and tests. Both answer fingerprint queries from a
`FingerprintIndex`, a brute-force numpy Hamming scan (about 10 ms for 10^6 images on one core).
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from provenance.fingerprint import FRAME_VARIANTS, PDQ_BYTES, Fingerprints
from provenance.watermarking import DEFAULT_WATERMARKER

_VARIANTS = len(FRAME_VARIANTS)
_PDQ_WORDS = PDQ_BYTES // 8


@dataclass(frozen=True)
class RegistryEntry:
    payload: int  # the 64-bit watermark payload; unique per image
    manifest_label: str
    fingerprints: Fingerprints
    signed_sha256: str
    mime_type: str
    manifest: dict  # the active manifest as the signed file carried it
    watermarked: bool = True
    algorithm: str = DEFAULT_WATERMARKER  # the watermark algorithm that marked it (provenance/watermarking.py)
    created_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    manifest_store: bytes | None = None  # the signed C2PA manifest store (application/c2pa), for resolution


@dataclass(frozen=True)
class Candidate:
    entry: RegistryEntry
    frame_distance: int  # smallest distance between the query's frame hash and the entry's variants
    face_distance: int | None  # None when the query or the entry has no face hash
    pdq_distance: int | None = None  # smallest over the query's 8 orientations; None when either has no PDQ


class SoftBindingRegistry(Protocol):
    def add(self, entry: RegistryEntry) -> None: ...

    def find_payload(self, payload: int) -> RegistryEntry | None: ...

    def find_manifest(self, manifest_label: str) -> RegistryEntry | None: ...

    def candidates(
        self, query: Fingerprints, frame_threshold: int, face_threshold: int, pdq_threshold: int = -1
    ) -> list[Candidate]: ...

    def count(self) -> int: ...


class FingerprintIndex:
    """Fingerprints of registered images in numpy arrays, scanned in full for each query.

    Keys are the images' 64-bit watermark payloads.
    """

    def __init__(self, capacity: int = 1024):
        self._frames = np.zeros((_VARIANTS, capacity), np.uint64)
        self._faces = np.zeros(capacity, np.uint64)
        self._has_face = np.zeros(capacity, bool)
        self._pdq = np.zeros((_PDQ_WORDS, capacity), np.uint64)
        self._has_pdq = np.zeros(capacity, bool)
        self._keys = np.zeros(capacity, np.uint64)
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, key: int, fingerprints: Fingerprints) -> None:
        self.extend([key], [fingerprints])

    def extend(self, keys: Iterable[int], fingerprints: Iterable[Fingerprints]) -> None:
        fingerprints = list(fingerprints)
        if any(len(item.frame) != _VARIANTS for item in fingerprints):
            raise ValueError(f"a registered image needs {_VARIANTS} frame hashes")
        self.extend_arrays(
            np.array(list(keys), dtype=np.uint64),
            np.array([item.frame for item in fingerprints], dtype=np.uint64).T.reshape(_VARIANTS, -1),
            np.array([item.face or 0 for item in fingerprints], dtype=np.uint64),
            np.array([item.face is not None for item in fingerprints], dtype=bool),
            pdq_words([item.pdq[0] if item.pdq else None for item in fingerprints]),
        )

    def extend_arrays(
        self,
        keys: np.ndarray,
        frames: np.ndarray,
        faces: np.ndarray,
        has_face: np.ndarray,
        pdq: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Bulk append, as read from a database: frames is (variants x n); keys, faces and has_face are (n,);
        pdq is (words x n, has_pdq (n,)) as `pdq_words` makes it, or None when no row has one."""
        start, end = self._size, self._size + len(keys)
        self._reserve(end)
        self._keys[start:end] = keys
        self._frames[:, start:end] = frames
        self._faces[start:end] = faces
        self._has_face[start:end] = has_face
        if pdq is not None:
            self._pdq[:, start:end], self._has_pdq[start:end] = pdq
        else:
            self._has_pdq[start:end] = False
        self._size = end

    def faces_count(self) -> int:
        return int(self._has_face[: self._size].sum())

    def nbytes(self) -> int:
        arrays = (self._frames, self._faces, self._has_face, self._pdq, self._has_pdq, self._keys)
        return sum(array.nbytes for array in arrays)

    def search(
        self, query: Fingerprints, frame_threshold: int, face_threshold: int, pdq_threshold: int = -1
    ) -> list[tuple]:
        """(key, frame distance, face distance or None, PDQ distance or None) for entries within any threshold,
        closest first. The PDQ distance is the smallest over the query's orientations."""
        size = self._size
        if not size:
            return []
        frame_distance = np.full(size, 64, np.uint8)
        target = np.uint64(query.frame[0])
        for variant in range(_VARIANTS):
            np.minimum(frame_distance, np.bitwise_count(self._frames[variant, :size] ^ target), out=frame_distance)
        hits = frame_distance <= frame_threshold
        face_distance = None
        if query.face is not None:
            face_distance = np.bitwise_count(self._faces[:size] ^ np.uint64(query.face))
            face_distance = np.where(self._has_face[:size], face_distance, 255)
            hits |= face_distance <= face_threshold
        pdq_distance = self._pdq_distances(query.pdq) if query.pdq else None
        if pdq_distance is not None:
            hits |= pdq_distance <= pdq_threshold
        rows = np.flatnonzero(hits)
        results = []
        for row in rows:
            face = None if face_distance is None or face_distance[row] == 255 else int(face_distance[row])
            pdq = None if pdq_distance is None or not self._has_pdq[row] else int(pdq_distance[row])
            results.append((int(self._keys[row]), int(frame_distance[row]), face, pdq))
        return sorted(results, key=lambda hit: hit[1] + (hit[2] if hit[2] is not None else 64))

    def _pdq_distances(self, variants: tuple[bytes, ...]) -> np.ndarray:
        size = self._size
        best = np.full(size, 1 << 10, np.int32)
        for variant in variants:
            words = pdq_words([variant])[0][:, 0]
            distance = np.zeros(size, np.int32)
            for index in range(_PDQ_WORDS):
                distance += np.bitwise_count(self._pdq[index, :size] ^ words[index])
            np.minimum(best, distance, out=best)
        return np.where(self._has_pdq[:size], best, 1 << 10)

    def _reserve(self, size: int) -> None:
        capacity = self._faces.shape[0]
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity)
        frames = np.zeros((_VARIANTS, capacity), np.uint64)
        frames[:, : self._size] = self._frames[:, : self._size]
        self._frames = frames
        pdq = np.zeros((_PDQ_WORDS, capacity), np.uint64)
        pdq[:, : self._size] = self._pdq[:, : self._size]
        self._pdq = pdq
        self._has_pdq = np.resize(self._has_pdq, capacity)
        self._faces = np.resize(self._faces, capacity)
        self._has_face = np.resize(self._has_face, capacity)
        self._keys = np.resize(self._keys, capacity)


class InMemoryRegistry:
    """A registry that lives as long as the process: for notebooks, tests and benchmarks."""

    def __init__(self):
        self._entries: dict[int, RegistryEntry] = {}
        self._index = FingerprintIndex()

    def add(self, entry: RegistryEntry) -> None:
        if entry.payload in self._entries:
            raise ValueError(f"watermark payload {entry.payload:016x} is already registered")
        self._entries[entry.payload] = entry
        self._index.add(entry.payload, entry.fingerprints)

    def find_payload(self, payload: int) -> RegistryEntry | None:
        return self._entries.get(payload)

    def find_manifest(self, manifest_label: str) -> RegistryEntry | None:
        return next((entry for entry in self._entries.values() if entry.manifest_label == manifest_label), None)

    def candidates(
        self, query: Fingerprints, frame_threshold: int, face_threshold: int, pdq_threshold: int = -1
    ) -> list[Candidate]:
        return [
            Candidate(self._entries[key], frame, face, pdq)
            for key, frame, face, pdq in self._index.search(query, frame_threshold, face_threshold, pdq_threshold)
        ]

    def count(self) -> int:
        return len(self._entries)


def pdq_words(hashes: list[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
    """PDQ hashes as (words x n) big-endian 64-bit words, and which of them are present."""
    data = b"".join(value if value is not None else bytes(PDQ_BYTES) for value in hashes)
    words = np.frombuffer(data, dtype=">u8").astype(np.uint64).reshape(len(hashes), _PDQ_WORDS).T
    return np.ascontiguousarray(words), np.array([value is not None for value in hashes], dtype=bool)
