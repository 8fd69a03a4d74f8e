"""Revoking the last key never opens a closed server: once a key was created, keys are
required until the configuration says otherwise (``reopen_without_active_keys``)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from continuo.api.app import create_app
from continuo.config import load_config
from continuo.core.keys import KeyRing, hash_key
from continuo.store.sql import SQLStore
from tests.support.configs import write_config
from tests.support.servers import ServerThread


def cli(config: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "continuo", "keys", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def status(server: ServerThread, key: str | None = None) -> int:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.get(f"{server.url}/v1/models", headers=headers).status_code


def until(condition, timeout: float = 5.0) -> None:
    """Poll an observable condition (the key caches last half a second)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_revoking_the_last_key_keeps_the_server_closed(upstream, tmp_path):
    config_path = write_config(
        tmp_path / "c.toml", database_url=f"sqlite:///{tmp_path / 'c.db'}", upstream_url=upstream.url
    )
    server = ServerThread(create_app(load_config(config_path))).start()
    try:
        assert status(server) == 200  # no key anywhere: open
        key = cli(config_path, "create", "--project", "only").strip()
        until(lambda: status(server) == 401)
        assert status(server, key) == 200
        (key_id,) = [line.split()[0] for line in cli(config_path, "list").splitlines()]
        cli(config_path, "revoke", key_id)
        until(lambda: status(server, key) == 401)  # the revoked key is refused...
        assert status(server) == 401  # ...and so is a caller without a key
    finally:
        server.stop()
    # A server started afresh on the same database (no cache) is closed too.
    again = ServerThread(create_app(load_config(config_path))).start()
    try:
        assert status(again) == 401 and status(again, key) == 401
    finally:
        again.stop()


@pytest.mark.parametrize("reopen", [False, True])
async def test_only_the_configuration_reopens_a_server_without_active_keys(tmp_path, reopen):
    store = SQLStore(f"sqlite:///{tmp_path / 'k.db'}")
    await store.open()
    try:
        ring = KeyRing(store, [], reopen_without_active_keys=reopen)
        assert await ring.required() is False
        await store.create_key("key_1", "p", hash_key("sk-1"))
        await store.revoke_key("key_1")
        fresh = KeyRing(store, [], reopen_without_active_keys=reopen)
        assert await fresh.required() is (not reopen)
        assert await fresh.project_of("sk-1") is None
    finally:
        await store.close()
