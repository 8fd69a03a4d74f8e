"""State outlives the process: stop the server, start it again on the same SQLite file."""

from __future__ import annotations

import sqlite3

import openai

from continuo.api.app import create_app
from tests.support.configs import make_config
from tests.support.migrations import head_revision
from tests.support.servers import ServerThread


def test_restart_keeps_responses_chains_and_items(upstream, tmp_path):
    db = tmp_path / "restart.db"
    config = make_config(upstream.url, db)
    first_server = ServerThread(create_app(config)).start()
    with openai.OpenAI(base_url=f"{first_server.url}/v1", api_key="k", max_retries=0) as client:
        one = client.responses.create(model="gpt-test", input="one")
        two = client.responses.create(model="gpt-test", input="two", previous_response_id=one.id)
    first_server.stop()

    second_server = ServerThread(create_app(make_config(upstream.url, db))).start()
    try:
        with openai.OpenAI(base_url=f"{second_server.url}/v1", api_key="k", max_retries=0) as client:
            assert client.responses.retrieve(two.id) == two
            items = client.responses.input_items.list(two.id, order="asc")
            assert [i.content[0].text for i in items.data] == ["one", "echo: one", "two"]
            client.responses.create(model="gpt-test", input="three", previous_response_id=two.id)
            assert [m["content"] for m in upstream.last["messages"]] == [
                "one",
                "echo: one",
                "two",
                "echo: two",
                "three",
            ]
    finally:
        second_server.stop()


def test_sqlite_file_is_wal_and_migrated(upstream, tmp_path):
    db = tmp_path / "wal.db"
    server = ServerThread(create_app(make_config(upstream.url, db))).start()
    server.stop()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == head_revision()
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"responses", "items"} <= tables


def test_each_turn_stores_only_its_own_items(client, server):
    """A chain is not copied into every row: turn N stores its input and output once."""
    first = client.responses.create(model="gpt-test", input="a")
    second = client.responses.create(model="gpt-test", input="b", previous_response_id=first.id)
    db = server.app.state.config.database.url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT kind, position FROM items WHERE response_id = ? ORDER BY kind, position", (second.id,)
        ).fetchall()
    assert rows == [(0, 0), (1, 0)]
