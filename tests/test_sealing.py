"""Sealing compaction items: authenticated, bound to a project, keys that rotate, and a
generated key that outlives a restart (kept in the database)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from continuo.core.sealing import Sealer, load_sealer
from continuo.errors import InvalidRequest
from continuo.store.sql import SQLStore

PAYLOAD = {"summary": "the user is Ada", "items": [{"type": "message", "role": "user", "content": "hi"}]}


def test_sealed_content_is_not_plaintext_and_opens_only_for_its_project():
    sealer = Sealer(["k1"])
    token = sealer.seal("team-a", PAYLOAD)
    assert "Ada" not in token and token.startswith("cs1.")
    assert sealer.open("team-a", token) == PAYLOAD
    with pytest.raises(InvalidRequest) as exc:
        sealer.open("team-b", token, "input[3]")
    assert exc.value.code == "invalid_encrypted_content" and exc.value.param == "input[3]"


def test_rotation_new_key_first_old_key_still_opens():
    old = Sealer(["old"]).seal("p", PAYLOAD)
    rotated = Sealer(["new", "old"])
    assert rotated.open("p", old) == PAYLOAD
    fresh = rotated.seal("p", PAYLOAD)
    assert Sealer(["new"]).open("p", fresh) == PAYLOAD
    with pytest.raises(InvalidRequest):
        Sealer(["new"]).open("p", old)  # the old key retired


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_the_generated_key_is_kept_in_the_database(database, tmp_path, monkeypatch, request):
    url = f"sqlite:///{tmp_path / 'c.db'}" if database == "sqlite" else request.getfixturevalue("pg_url")
    store = SQLStore(url, migrate=True)
    await store.open()
    await store._write(lambda conn: conn.execute(text("DELETE FROM server_secrets")))
    token = (await load_sealer(store, None)).seal("p", PAYLOAD)
    await store.close()
    again = SQLStore(url, migrate=True)
    await again.open()
    try:
        assert (await load_sealer(again, None)).open("p", token) == PAYLOAD  # same key after a restart
        # Two replicas starting at once keep one key: the first one made wins.
        kept = await again.get_secret("compaction_key")
        assert kept is not None and await again.ensure_secret("compaction_key", "another") == kept
        # An environment key takes over sealing; the kept key still opens older items.
        monkeypatch.setenv("CONTINUO_TEST_SEAL", "from-env")
        configured = await load_sealer(again, "CONTINUO_TEST_SEAL")
        assert configured.open("p", token) == PAYLOAD
        assert Sealer(["from-env"]).open("p", configured.seal("p", PAYLOAD)) == PAYLOAD
        monkeypatch.delenv("CONTINUO_TEST_SEAL")
        with pytest.raises(ValueError):
            await load_sealer(again, "CONTINUO_TEST_SEAL")  # named but not set: refuse to start
    finally:
        await again.close()
