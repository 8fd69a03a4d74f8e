"""API keys and the projects they belong to.

Only a SHA-256 of each key is kept (keys are long random strings, so a fast hash is
enough). Look-ups are cached for half a second, so a revoked key stops working on a
running server within a second, without a database read on every request.

A server with no key at all is open. Once a key has been created it stays closed, even
after every key was revoked: revoking the last key must not open it (and let the revoked
key, or no key, in). Only the configuration opens it again
(``[security] reopen_without_active_keys = true``).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time

from continuo.config import KeyConfig
from continuo.store.base import KeyStore

CACHE_SECONDS = 0.5


def hash_key(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh (id, key)."""
    return f"key_{secrets.token_hex(8)}", f"sk-cont-{secrets.token_urlsafe(32)}"


class KeyRing:
    def __init__(
        self, store: KeyStore, configured: list[KeyConfig], *, reopen_without_active_keys: bool = False
    ) -> None:
        self.store = store
        self.reopen_without_active_keys = reopen_without_active_keys
        self.configured: dict[str, str] = {}
        for key in configured:
            if key.hash is not None:
                self.configured[key.hash] = key.project
            elif key.env is not None and (value := os.environ.get(key.env)):
                self.configured[hash_key(value)] = key.project
        self._projects: dict[str, tuple[str | None, float]] = {}
        self._required: tuple[bool, float] = (False, 0.0)

    async def required(self) -> bool:
        """Whether every API request needs a key: one is configured, or one was ever
        created in the store (with ``reopen_without_active_keys``: one is active)."""
        if self.configured:
            return True
        value, until = self._required
        now = time.monotonic()
        if now >= until:
            if self.reopen_without_active_keys:
                value = await self.store.has_active_keys()
            else:
                value = await self.store.ever_had_keys()
            self._required = (value, now + CACHE_SECONDS)
        return value

    async def project_of(self, key: str) -> str | None:
        """The project of an active key, or None."""
        digest = hash_key(key)
        if (project := self.configured.get(digest)) is not None:
            return project
        now = time.monotonic()
        cached = self._projects.get(digest)
        if cached is not None and now < cached[1]:
            return cached[0]
        if len(self._projects) > 10_000:
            self._projects.clear()
        found = await self.store.key_project(digest)
        self._projects[digest] = (found, now + CACHE_SECONDS)
        return found
