"""Finding a disclosed image again from its pixels alone: watermark first, fingerprints to propose candidates.

Decision rule (docs/SOFT_BINDINGS.md has the arithmetic):

1. The watermark decodes (CRC-16 matches, sync z >= 7) to a 64-bit payload that is registered: a match.
2. Otherwise the fingerprints propose at most MAX_CANDIDATES registered images (frame distance
   <= FRAME_THRESHOLD or face distance <= FACE_THRESHOLD); one is a match only when at least
   AGREEMENT_THRESHOLD of the 172 received watermark code bits agree with that image's codeword.
3. Fingerprints alone never make a match: one person's photos resemble each other too much for that to
   stay rare among 10^6 images. They are reported as weak evidence.
"""

from dataclasses import dataclass

from PIL import Image

from provenance.evidence import Evidence
from provenance.fingerprint import Fingerprints, fingerprint_for_query
from provenance.registry import Candidate, RegistryEntry, SoftBindingRegistry
from provenance.watermark import Z_THRESHOLD, read_watermark
from scoring.faces import hash_distance

FRAME_THRESHOLD = 10
FACE_THRESHOLD = 12
AGREEMENT_THRESHOLD = 0.75
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class SoftBindingResult:
    entry: RegistryEntry | None  # the registered image this photo is a copy of, if matched
    findings: list[Evidence]


def find_disclosure(image: Image.Image, registry: SoftBindingRegistry) -> SoftBindingResult:
    reading = read_watermark(image)
    query = fingerprint_for_query(image)
    findings: list[Evidence] = []
    if reading.payload is not None:
        entry = registry.find_payload(reading.payload)
        detail = (
            f"watermark decoded: payload {reading.payload:016x}, CRC-16 matches, sync z = {reading.z_score:.1f} "
            f"(threshold {Z_THRESHOLD:.0f}), {reading.agreement_with(reading.payload):.0%} of code bits agree"
        )
        if entry is not None:
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

    candidates = registry.candidates(query, FRAME_THRESHOLD, FACE_THRESHOLD)[:MAX_CANDIDATES]
    for candidate in candidates:
        agreement = reading.agreement_with(candidate.entry.payload)
        if agreement >= AGREEMENT_THRESHOLD:
            findings.append(
                Evidence(
                    "watermark",
                    f"{agreement:.0%} of received watermark code bits agree with the payload of "
                    f"{candidate.entry.manifest_label} (threshold {AGREEMENT_THRESHOLD:.0%}; sync z = "
                    f"{reading.z_score:.1f})",
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
    return Candidate(entry, frame, hash_distance(query.face, entry.fingerprints.face) if both else None)


def _describe(candidate: Candidate) -> Evidence:
    within = candidate.frame_distance <= FRAME_THRESHOLD or (
        candidate.face_distance is not None and candidate.face_distance <= FACE_THRESHOLD
    )
    return Evidence("fingerprint", _distances(candidate), "strong" if within else "weak")


def _distances(candidate: Candidate) -> str:
    face = (
        f"face-crop pHash distance {candidate.face_distance} (threshold {FACE_THRESHOLD})"
        if candidate.face_distance is not None
        else "no face hash to compare"
    )
    return f"frame pHash distance {candidate.frame_distance} (threshold {FRAME_THRESHOLD}), {face}"
