"""Sealing compaction items: ``encrypted_content`` is AES-256-GCM, never plaintext.

A sealed value is ``cs1.`` + base64url(key id (8 bytes) | nonce (12) | ciphertext+tag). The
project that made it is the associated data: another project's item, like an item sealed
under a key this server does not hold or one changed by a single bit, does not open, and
is a 400 ``invalid_encrypted_content``.

Keys: ``[security] compaction_key_env`` names an environment variable holding one key or
several, comma-separated (any string; the AES key is its SHA-256). The first one seals;
every one opens, so a key is rotated by putting the new one first and dropping the old
one later. With no variable configured, a key generated on the first start is kept in
the database (table ``server_secrets``) and shared by every replica; it still opens items
once an environment key is configured, until its row is deleted.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from continuo.errors import InvalidRequest
from continuo.store.base import SecretStore

PREFIX = "cs1."
SECRET_NAME = "compaction_key"


def _key_bytes(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"continuo-key-id" + key).digest()[:8]


def invalid(param: str) -> InvalidRequest:
    return InvalidRequest(
        "The encrypted content of this compaction item could not be verified: it was changed, "
        "or it was made by another server or for another project.",
        param=param,
        code="invalid_encrypted_content",
    )


class Sealer:
    def __init__(self, secrets_: list[str]) -> None:
        if not secrets_:
            raise ValueError("a sealer needs at least one key")
        keys = [_key_bytes(s) for s in secrets_]
        self._seal_key = keys[0]
        self._keys = {_key_id(k): AESGCM(k) for k in keys}

    def seal(self, project: str, payload: dict[str, Any]) -> str:
        nonce = os.urandom(12)
        key_id = _key_id(self._seal_key)
        sealed = self._keys[key_id].encrypt(nonce, orjson.dumps(payload), project.encode())
        return PREFIX + base64.urlsafe_b64encode(key_id + nonce + sealed).decode().rstrip("=")

    def open(self, project: str, token: Any, param: str = "input") -> dict[str, Any]:
        if not isinstance(token, str) or not token.startswith(PREFIX):
            raise invalid(param)
        body = token[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            raise invalid(param) from None
        aead = self._keys.get(raw[:8])
        if aead is None or len(raw) < 8 + 12 + 16:
            raise invalid(param)
        try:
            plain = aead.decrypt(raw[8:20], raw[20:], project.encode())
            payload = orjson.loads(plain)
        except (InvalidTag, orjson.JSONDecodeError):
            raise invalid(param) from None
        if not isinstance(payload, dict):
            raise invalid(param)
        return payload


async def load_sealer(store: SecretStore, key_env: str | None) -> Sealer:
    """The configured keys (first seals), then the generated one kept in the database."""
    configured = [k.strip() for k in (os.environ.get(key_env, "") if key_env else "").split(",") if k.strip()]
    if key_env and not configured:
        raise ValueError(f"[security] compaction_key_env names {key_env}, which is not set")
    if configured:
        kept = await store.get_secret(SECRET_NAME)
        return Sealer(configured + ([kept] if kept and kept not in configured else []))
    return Sealer([await store.ensure_secret(SECRET_NAME, secrets.token_urlsafe(32))])
