"""Finding a disclosed image again from its pixels alone: watermark first, fingerprints to propose candidates.

Decision rule (docs/SOFT_BINDINGS.md has the arithmetic):

1. A watermark decodes (its own checks pass: CRC-16 and sync z for the tile algorithms) to a 64-bit payload
   that is registered under the algorithm that read it: a match. Every algorithm this installation knows
   is read, newest first (provenance/watermarking.py), until one decodes.
2. Otherwise the fingerprints propose at most MAX_CANDIDATES registered images (frame distance
   <= FRAME_THRESHOLD, face distance <= FACE_THRESHOLD or PDQ distance <= PDQ_THRESHOLD over the query's
   eight orientations); one is a match only when at least AGREEMENT_THRESHOLD of the watermark code bits
   its own algorithm received agree with that image's codeword.
3. Fingerprints alone never make a match: one person's photos resemble each other too much for that to
   stay rare among 10^6 images. They are reported as weak evidence.
"""

from dataclasses import dataclass

from PIL import Image

from provenance.evidence import Evidence
from provenance.fingerprint import Fingerprints, fingerprint_for_query, pdq_distance
from provenance.registry import Candidate, RegistryEntry, SoftBindingRegistry
from provenance.watermarking import WatermarkReading, known_watermarkers, watermarker
from scoring.faces import hash_distance

FRAME_THRESHOLD = 10
FACE_THRESHOLD = 12
PDQ_THRESHOLD = 40
AGREEMENT_THRESHOLD = 0.75
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class SoftBindingResult:
    entry: RegistryEntry | None  # the registered image this photo is a copy of, if matched
    findings: list[Evidence]


def find_disclosure(
    image: Image.Image,
    registry: SoftBindingRegistry,
    *,
    query: Fingerprints | None = None,
    readings: dict[str, WatermarkReading] | None = None,
) -> SoftBindingResult:
    """Decide whether `image` is a copy of a registered disclosure. `query` and `readings` (by algorithm name),
    when a caller already has them, save computing them again (bench/robustness.py measures margins on them)."""
    query = query if query is not None else fingerprint_for_query(image)
    findings: list[Evidence] = []
    readings = dict(readings or {})
    for marker in known_watermarkers():
        if marker.name not in readings:
            readings[marker.name] = marker.read(image)
        reading = readings[marker.name]
        if reading.payload is None:
            continue
        entry = registry.find_payload(reading.payload)
        agreeing = reading.agreement_with(marker.codeword(reading.payload))
        detail = (
            f"{marker.name} watermark decoded: payload {reading.payload:016x}, CRC-16 matches, sync z = "
            f"{reading.confidence:.1f} (threshold {marker.confidence_threshold:.0f}), {agreeing:.0%} of code bits agree"
        )
        if entry is not None and entry.algorithm == marker.name:
            findings.append(Evidence("watermark", f"{detail}; registered as {entry.manifest_label}", "strong"))
            findings.append(_describe(_compare(query, entry)))
            return SoftBindingResult(entry, findings)
        findings.append(
            Evidence(
                "watermark",
                f"{detail}, but the payload is not in this registry: a headshot disclosure from another "
                "installation, or one whose record was removed",
                "weak",
            )
        )
        break

    candidates = registry.candidates(query, FRAME_THRESHOLD, FACE_THRESHOLD, PDQ_THRESHOLD)[:MAX_CANDIDATES]
    for candidate in candidates:
        if not candidate.entry.watermarked:
            continue
        marker = watermarker(candidate.entry.algorithm)
        if marker.name not in readings:
            readings[marker.name] = marker.read(image)
        reading = readings[marker.name]
        agreement = reading.agreement_with(marker.codeword(candidate.entry.payload))
        if agreement >= AGREEMENT_THRESHOLD:
            findings.append(
                Evidence(
                    "watermark",
                    f"{agreement:.0%} of received {marker.name} watermark code bits agree with the payload of "
                    f"{candidate.entry.manifest_label} (threshold {AGREEMENT_THRESHOLD:.0%}; sync z = "
                    f"{reading.confidence:.1f})",
                    "strong",
                )
            )
            findings.append(_describe(candidate))
            return SoftBindingResult(candidate.entry, findings)
    findings.extend(
        Evidence(
            "fingerprint",
            _distances(candidate) + f"; {candidate.entry.manifest_label} resembles this photo, but its "
            "watermark does not confirm it (fingerprints alone are not proof)",
            "weak",
        )
        for candidate in candidates[:3]
    )
    return SoftBindingResult(None, findings)


def _compare(query: Fingerprints, entry: RegistryEntry) -> Candidate:
    frame = min(hash_distance(query.frame[0], variant) for variant in entry.fingerprints.frame)
    both = query.face is not None and entry.fingerprints.face is not None
    pdq = (
        min(pdq_distance(variant, entry.fingerprints.pdq[0]) for variant in query.pdq)
        if query.pdq and entry.fingerprints.pdq
        else None
    )
    return Candidate(entry, frame, hash_distance(query.face, entry.fingerprints.face) if both else None, pdq)


def _describe(candidate: Candidate) -> Evidence:
    within = (
        candidate.frame_distance <= FRAME_THRESHOLD
        or (candidate.face_distance is not None and candidate.face_distance <= FACE_THRESHOLD)
        or (candidate.pdq_distance is not None and candidate.pdq_distance <= PDQ_THRESHOLD)
    )
    return Evidence("fingerprint", _distances(candidate), "strong" if within else "weak")


def _distances(candidate: Candidate) -> str:
    face = (
        f"face-crop pHash distance {candidate.face_distance} (threshold {FACE_THRESHOLD})"
        if candidate.face_distance is not None
        else "no face hash to compare"
    )
    pdq = (
        f", PDQ distance {candidate.pdq_distance} of 256 over 8 orientations (threshold {PDQ_THRESHOLD})"
        if candidate.pdq_distance is not None
        else ""
    )
    return f"frame pHash distance {candidate.frame_distance} (threshold {FRAME_THRESHOLD}), {face}{pdq}"
