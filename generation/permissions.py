"""Respecting the photographer: a reference photo whose Content Credentials forbid AI training is refused.

The original bytes' credentials are read once (`provenance.verify_image`), when a photo is first accepted and
before anything re-encodes it; the permission is decided from that report.
An operator who holds a licence for such a photo records it (`--licensed PHOTO --licence-note TEXT`);
the note is kept with the model's record.
"""

from dataclasses import dataclass

from provenance.verify import CredentialsReport

FORBIDDING_ENTRIES = (
    "c2pa.ai_training",
    "c2pa.ai_generative_training",
    "cawg.ai_training",
    "cawg.ai_generative_training",
)


@dataclass(frozen=True)
class TrainingPermission:
    allowed: bool
    reason: str
    licence_note: str | None = None
    training_mining: dict | None = None  # the assertion as the photo's credentials carried it


def training_permission(credentials: CredentialsReport, licence_note: str | None = None) -> TrainingPermission:
    """May this photo be used to train a model, given what its original bytes' credentials say?"""
    assertion = credentials.training_mining
    if credentials.state not in ("trusted", "valid-untrusted") or not assertion:
        return TrainingPermission(
            True, "no valid training-mining assertion in its Content Credentials", None, assertion
        )
    entries = assertion.get("entries") or {}
    forbidden = [key for key in FORBIDDING_ENTRIES if (entries.get(key) or {}).get("use") == "notAllowed"]
    if not forbidden:
        return TrainingPermission(True, "its Content Credentials allow AI training", None, assertion)
    signer = credentials.signer.subject if credentials.signer else "an unknown signer"
    if licence_note:
        return TrainingPermission(
            True,
            f"its Content Credentials ({signer}) forbid AI training; used under a recorded licence",
            licence_note,
            assertion,
        )
    return TrainingPermission(
        False,
        f"its Content Credentials, signed by {signer}, forbid AI training ({', '.join(forbidden)}); "
        "record a licence with --licensed PHOTO --licence-note TEXT if you hold one",
        None,
        assertion,
    )
