"""Retention through the server, on SQLite and PostgreSQL: each project keeps what it
stored for its own days; DELETE and retention leave no row behind that belonged to what
they deleted (every table of the database is looked at); requests are answered while a
large sweep runs; two servers on one database never sweep at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import func, insert, select, update

from continuo.api.app import create_app
from continuo.config import ConfigError, parse_config
from continuo.core.keys import hash_key
from continuo.core.retention import DAY_US
from continuo.store.schema import conversations, items, responses
from tests.support import db
from tests.support.postgres import create_database, drop_database
from tests.support.servers import ServerThread
from tests.support.waits import wait_until

HOUR_US = 3600 * 1_000_000
# Tables that hold the server's own state, not anything a response or conversation owns.
SERVER_TABLES = {"alembic_version", "api_keys", "server_secrets", "leases", "rate_buckets", "stream_slots"}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'retention.db'}"
        return
    url = create_database()
    yield url
    drop_database(url)


def config(upstream_url: str, url: str, **sections: Any) -> Any:
    raw: dict[str, Any] = {
        "database": {"url": url, "pool_size": 4},
        "providers": [{"name": "fake", "type": "chat_completions", "base_url": f"{upstream_url}/v1", "max_retries": 0}],
        "models": [{"name": "*", "provider": "fake"}],
        "background": {"poll_seconds": 0.2},
    }
    raw.update(sections)
    raw["server"] = {"retention_interval": 0.05, **sections.get("server", {})}
    return parse_config(raw)


def sdk(server: ServerThread, key: str = "k") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def age(url: str, table: Any, ids: list[str] | None, by_us: int) -> None:
    """Make rows look ``by_us`` older (all of the table's rows when ``ids`` is None)."""
    column = table.c.created_at_us if table is responses else table.c.updated_at_us
    statement = update(table).values({column: column - by_us})
    if ids is not None:
        statement = statement.where(table.c.id.in_(ids))
    db.run(url, lambda conn: conn.execute(statement))


def full_sweeps(server: ServerThread, passes: int = 2) -> None:
    """Wait until the server's sweeper has begun and finished a whole sweep since now."""
    sweeper = server.app.state.retention
    start = sweeper.passes
    wait_until(lambda: sweeper.passes >= start + passes)


def stored(client: openai.OpenAI, response_id: str) -> bool:
    try:
        client.responses.retrieve(response_id)
    except openai.NotFoundError:
        return False
    return True


@pytest.mark.wire_exempt("stored")  # retention deletes them: the point
def test_each_project_keeps_its_responses_for_its_own_days(upstream, database):
    keys = {"short": "sk-short", "forever": "sk-forever", "other": "sk-other"}
    server = ServerThread(
        create_app(
            config(
                upstream.url,
                database,
                server={"retain_days": 2},
                projects=[{"name": "short", "retain_days": 0.5}, {"name": "forever", "retain_days": 0}],
                keys=[{"project": project, "hash": hash_key(key)} for project, key in keys.items()],
            )
        )
    ).start()
    ages = {"hours": 2 * HOUR_US, "day": DAY_US, "week": 7 * DAY_US}
    try:
        made: dict[str, dict[str, str]] = {}
        for project, key in keys.items():
            with sdk(server, key) as client:
                made[project] = {name: client.responses.create(model="m", input=name).id for name in ages}
        full_sweeps(server)
        for name, by_us in ages.items():
            age(database, responses, [made[project][name] for project in keys], by_us)
        full_sweeps(server)
        kept = {
            project: {name for name, response_id in made[project].items() if stored(sdk(server, key), response_id)}
            for project, key in keys.items()
        }
        assert kept == {"short": {"hours"}, "forever": {"hours", "day", "week"}, "other": {"hours", "day"}}
        assert 'continuo_retention_deleted_total{kind="responses"}' in httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()


def own_input_id(client: openai.OpenAI, response_id: str) -> str:
    return client.responses.input_items.list(response_id, order="desc", limit=1).data[0].id


def unshared_ids(client: openai.OpenAI, response: Any) -> list[str]:
    """The response's id and the ids of the items only it holds (its input and output)."""
    return [response.id, own_input_id(client, response.id), *(item.id for item in response.output)]


def left_behind(url: str, ids: list[str]) -> list[str]:
    """Rows anywhere that mention ``ids``, but for a kept response naming the deleted one
    it followed (its ``previous_response_id``, as OpenAI's object keeps it)."""

    def allowed(table: str, needle: str) -> str:
        return f"previous_response_id = '{needle}'" if table == "responses" else ""

    return db.mentions(url, ids, allowed)


def texts(page: Any) -> list[str]:
    return [item.content[0].text for item in page.data]


@pytest.mark.wire_exempt("stored")  # retention deletes them: the point
def test_delete_and_retention_leave_no_orphan_rows(upstream, database):
    server = ServerThread(create_app(config(upstream.url, database, server={"retain_days": 1}))).start()
    try:
        with sdk(server) as client:
            root = client.responses.create(model="m", input="root")
            a = client.responses.create(model="m", input="a", previous_response_id=root.id)
            b = client.responses.create(model="m", input="b", previous_response_id=root.id)
            a1 = client.responses.create(model="m", input="a1", previous_response_id=a.id)
            a2 = client.responses.create(model="m", input="a2", previous_response_id=a.id)
            b1 = client.responses.create(model="m", input="b1", previous_response_id=b.id)
            job = client.responses.create(model="m", input="job", previous_response_id=b1.id, background=True)
            job = wait_until(lambda: (r := client.responses.retrieve(job.id)).status == "completed" and r)
            assert len(list(client.responses.retrieve(job.id, stream=True))) > 3  # its events are stored
            conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": "hi"}])
            c1 = client.responses.create(model="m", input="c1", conversation=conversation.id)
            c2 = client.responses.create(model="m", input="c2", conversation=conversation.id)
            everything = {r.id: unshared_ids(client, r) for r in (root, a, b, a1, a2, b1, job, c1, c2)}
            # c1's items are the conversation's too: they stay, as its own copies.
            deleted = everything[a.id] + everything[job.id] + [c1.id]

            for response in (a, job, c1):
                client.responses.delete(response.id)
            assert left_behind(database, deleted) == []
            # A kept response whose ancestor was deleted: its context begins after the gap.
            assert texts(client.responses.input_items.list(a1.id, order="asc")) == ["a1"]
            client.responses.create(model="m", input="more", previous_response_id=a1.id)
            assert [m["content"] for m in upstream.last["messages"]] == ["a1", "echo: a1", "more"]
            conversation_items = texts(client.conversations.items.list(conversation.id, order="asc"))
            assert conversation_items == ["hi", "c1", "echo: c1", "c2", "echo: c2"]

            # Retention takes the oldest part of the tree (the root and one branch point).
            full_sweeps(server)
            age(database, responses, [root.id, b.id], 2 * DAY_US)
            full_sweeps(server)
            deleted += everything[root.id] + everything[b.id]
            assert left_behind(database, deleted) == []
            assert not stored(client, root.id) and stored(client, b1.id)
            with pytest.raises(openai.BadRequestError) as refused:
                client.responses.create(model="m", input="x", previous_response_id=root.id)
            assert refused.value.body["code"] == "previous_response_not_found"
            assert texts(client.responses.input_items.list(b1.id, order="asc")) == ["b1"]

            # Then the rest, the conversation included.
            age(database, responses, None, 2 * DAY_US)
            age(database, conversations, None, 2 * DAY_US)
            full_sweeps(server)
            with pytest.raises(openai.NotFoundError):
                client.conversations.retrieve(conversation.id)
        all_ids = [i for ids in everything.values() for i in ids] + [conversation.id]
        assert left_behind(database, all_ids) == []
        counts = db.row_counts(database)
        assert {"responses", "items", "events", "conversations", "conversation_items"} <= set(counts)
        assert {table: n for table, n in counts.items() if n and table not in SERVER_TABLES} == {}
    finally:
        server.stop()


def seed(url: str, count: int, project: str = "") -> list[str]:
    """``count`` stored responses of one item each, written straight into the database."""
    created = 1_000_000 * 1_700_000_000
    ids = [f"resp_seed{project}{i:06}" for i in range(count)]
    body = '{"object": "response", "status": "completed"}'
    rows = [
        {
            "id": rid,
            "project": project,
            "status": "completed",
            "background": False,
            "created_at_us": created,
            "updated_at_us": created,
            "body": body,
        }
        for rid in ids
    ]
    item_rows = [{"response_id": rid, "kind": 1, "position": 0, "item_id": f"msg_{rid}", "body": "{}"} for rid in ids]

    def write(conn: Any) -> None:
        conn.execute(insert(responses), rows)
        conn.execute(insert(items), item_rows)

    db.run(url, write)
    return ids


def seeded_left(url: str) -> int:
    query = select(func.count()).select_from(responses).where(responses.c.id.like("resp_seed%"))
    return int(db.run(url, lambda conn: conn.execute(query).scalar()) or 0)


def test_requests_are_answered_while_a_large_sweep_runs(upstream, database):
    server = ServerThread(
        create_app(config(upstream.url, database, server={"retain_days": 1, "retention_batch": 10}))
    ).start()
    try:
        # A sweep of some seconds in batches of five responses: a PostgreSQL commit waits
        # for its WAL to reach the disk, so each batch takes longer there.
        total = len(seed(database, 4_000 if database.startswith("sqlite") else 800))
        during: list[tuple[str, int]] = []
        with sdk(server) as client:
            wait_until(lambda: seeded_left(database) < total)  # the sweep has begun
            while seeded_left(database) > 0:
                made = client.responses.create(model="m", input="during the sweep")
                chained = client.responses.create(model="m", input="again", previous_response_id=made.id)
                during.append((chained.id, seeded_left(database)))
            # Answered while the sweep still had most of its work ahead, not after it.
            answered_mid_sweep = [left for _, left in during if left > 0]
            assert len(answered_mid_sweep) >= 3 and answered_mid_sweep[0] > total // 2
            assert all(stored(client, response_id) for response_id, _ in during)
    finally:
        server.stop()


def test_two_servers_on_one_database_never_sweep_together(upstream, database):
    settings = config(upstream.url, database, server={"retain_days": 1, "retention_batch": 50})
    first = ServerThread(create_app(settings)).start()
    second = ServerThread(create_app(settings)).start()
    servers = [first, second]
    try:
        seed(database, 2_000, project="a")
        wait_until(lambda: seeded_left(database) == 0, timeout=60)
        totals = sorted(s.app.state.retention.total.responses for s in servers)
        assert totals == [0, 2_000]
        sweeper = next(s for s in servers if s.app.state.retention.total.responses)
        idle = next(s for s in servers if s is not sweeper)
        assert idle.app.state.retention.passes == 0  # it never held the lease
        # Once the sweeping server stops, the other one takes over.
        sweeper.stop()
        servers.remove(sweeper)
        seed(database, 300, project="b")
        wait_until(lambda: seeded_left(database) == 0, timeout=60)
        assert idle.app.state.retention.total.responses == 300
    finally:
        for server in servers:
            server.stop()


RETENTION_MISTAKES = [
    ({"server": {"retain_days": -1}}, "server.retain_days: must be >= 0, got -1"),
    ({"server": {"retain_days": "30"}}, 'server.retain_days: expected a number, got "30"'),
    ({"server": {"retain_days": float("inf")}}, "server.retain_days: must be <= 100000, got Infinity"),
    ({"server": {"retention_interval": 0}}, "server.retention_interval: must be > 0, got 0"),
    ({"server": {"retention_batch": 0}}, "server.retention_batch: must be >= 1, got 0"),
    ({"projects": [{"retain_days": 1}]}, "projects[0].name: required"),
    ({"projects": [{"name": "a", "retain": 1}]}, "projects[0].retain: unknown key (did you mean 'retain_days'?)"),
    ({"projects": [{"name": "a", "retain_days": True}]}, "projects[0].retain_days: expected a number, got true"),
    (
        {"projects": [{"name": "a"}, {"name": "a", "retain_days": 3}]},
        "projects[1].name: another [[projects]] entry is already named 'a'",
    ),
    ({"projects": [{"name": "x" * 129}]}, "projects[0].name: must be at most 128 characters"),
]


@pytest.mark.parametrize(("raw", "line"), RETENTION_MISTAKES, ids=[m[1].split(":")[0] for m in RETENTION_MISTAKES])
def test_retention_settings_are_checked(raw, line):
    with pytest.raises(ConfigError) as raised:
        parse_config(raw)
    assert raised.value.problems == [line]


def test_check_config_reports_a_retention_mistake(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[server]\nretain_days = 30\n\n[[projects]]\nname = "team-a"\nretain_days = -2\n')
    result = subprocess.run(
        [sys.executable, "-m", "continuo", "check-config", "--config", str(path)], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (
        2,
        f"continuo: {path}: projects[0].retain_days: must be >= 0, got -2\n",
    )
    path.write_text('[server]\nretain_days = 30\n\n[[projects]]\nname = ""\nretain_days = 0\n')
    ok = subprocess.run(
        [sys.executable, "-m", "continuo", "check-config", "--config", str(path)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
