"""Provenance: signing credentials, C2PA disclosure, and the verdict of `verify`.

Usable on its own (no HTTP, no database, no torch):

    from provenance import CredentialStore, disclose_image, verify_image
"""

from provenance.credentials import (
    CertificateInfo,
    CredentialsError,
    CredentialStore,
    SigningIdentity,
    TrustAnchors,
)
from provenance.disclose import Disclosure, disclose_image, parse_model_hashes
from provenance.evidence import Evidence
from provenance.images import ImageInputError, ImageLimits, detect_format
from provenance.verify import Verdict, VerifyFailure, verify_image, verify_path

__all__ = [
    "CertificateInfo",
    "CredentialStore",
    "CredentialsError",
    "Disclosure",
    "Evidence",
    "ImageInputError",
    "ImageLimits",
    "SigningIdentity",
    "TrustAnchors",
    "Verdict",
    "VerifyFailure",
    "detect_format",
    "disclose_image",
    "parse_model_hashes",
    "verify_image",
    "verify_path",
]
