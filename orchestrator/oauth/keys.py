"""The key ID tokens are signed with: a P-256 key (ES256) derived from the installation's key
(core/secret_store.ensure_key), so every replica that shares the installation key signs
with the same one, nothing more is stored, and a new installation key is a new signing key.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from orchestrator.core import secret_store

ALGORITHM = "ES256"
# The order of P-256's group: a private scalar is 1..ORDER-1.
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


@functools.cache
def _key_from(installation_key: bytes) -> ec.EllipticCurvePrivateKey:
    seed = hmac.new(installation_key, b"spaceport-oidc-signing-key", hashlib.sha512).digest()
    scalar = int.from_bytes(seed, "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def signing_key() -> ec.EllipticCurvePrivateKey:
    return _key_from(secret_store.ensure_key())


def key_id() -> str:
    public = (
        signing_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    digest = hashlib.sha256(public).digest()[:12]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def jwks() -> dict[str, Any]:
    """The public half, as a JSON Web Key Set (what `jwks_uri` serves)."""
    public = jwt.algorithms.ECAlgorithm.to_jwk(signing_key().public_key(), as_dict=True)
    return {"keys": [{**public, "use": "sig", "alg": ALGORITHM, "kid": key_id()}]}


def sign(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, signing_key(), algorithm=ALGORITHM, headers={"kid": key_id()})
