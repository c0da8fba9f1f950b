"""Stands in for a KMS/HSM client in tests: signs with a key the test put in the environment."""

import os

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


def sign(data: bytes) -> bytes:
    key = serialization.load_pem_private_key(os.environ["TEST_HSM_KEY"].encode(), password=None)
    return key.sign(data, ec.ECDSA(hashes.SHA256()))
