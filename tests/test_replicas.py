"""Several replicas on one PostgreSQL database: any replica serves any id, background
runs are claimed once, cancelled and followed across replicas, and a dead replica's runs
end instead of hanging."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import openai
import pytest

from tests.support.cluster import Cluster, client, replica_config
from tests.support.fake_chat import Reply
from tests.support.postgres import create_database, drop_database
from tests.support.waits import wait_until


@pytest.fixture(scope="module")
def cluster(upstream, tmp_path_factory) -> Iterator[tuple[openai.OpenAI, openai.OpenAI, Cluster]]:
    """Replica A runs background work; replica B only answers requests."""
    nodes = Cluster(tmp_path_factory.mktemp("replicas"), upstream.url)
    a = nodes.replica("a", max_concurrent=4)
    b = nodes.replica("b", max_concurrent=0)
    with client(a) as on_a, client(b) as on_b:
        yield on_a, on_b, nodes
    nodes.close()


def test_any_replica_serves_any_id(cluster, upstream):
    on_a, on_b, _ = cluster
    first = on_a.responses.create(model="m", input="one")
    assert on_b.responses.retrieve(first.id) == first
    assert [i.content[0].text for i in on_b.responses.input_items.list(first.id).data] == ["one"]
    second = on_b.responses.create(model="m", input="two", previous_response_id=first.id)
    assert [m["content"] for m in upstream.last["messages"]] == ["one", "echo: one", "two"]
    assert on_a.responses.retrieve(second.id).previous_response_id == first.id
    on_b.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        on_a.responses.retrieve(first.id)


def test_cancel_through_another_replica(cluster, upstream):
    on_a, on_b, _ = cluster
    upstream.script(Reply(text="c" * 600, chunk_size=2, delay=0.05))
    response = on_b.responses.create(model="m", input="go", background=True)  # runs on A
    wait_until(lambda: on_b.responses.retrieve(response.id).status == "in_progress")
    wait_until(lambda: len(upstream.requests) == 1)
    cancelled = on_b.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    wait_until(lambda: upstream.disconnects == 1)
    assert on_a.responses.retrieve(response.id).status == "cancelled"
    types = [e.type for e in on_a.responses.retrieve(response.id, stream=True)]
    assert types[-1] == "response.cancelled"


def test_resume_through_another_replica_while_running(cluster, upstream):
    on_a, on_b, _ = cluster
    upstream.script(Reply(text="resume " * 30, chunk_size=3, delay=0.03))
    stream = on_a.responses.create(model="m", input="go", background=True, stream=True)
    head = []
    for event in stream:
        head.append(event.to_dict())
        if len(head) == 8:
            break
    stream.close()
    response_id = head[0]["response"]["id"]
    assert on_b.responses.retrieve(response_id).status == "in_progress"
    tail = [e.to_dict() for e in on_b.responses.retrieve(response_id, stream=True, starting_after=7)]
    whole = [e.to_dict() for e in on_a.responses.retrieve(response_id, stream=True)]
    assert head + tail == whole
    assert whole[-1]["type"] == "response.completed"


def test_queued_runs_are_claimed_exactly_once(cluster, upstream):
    on_a, on_b, nodes = cluster
    c = nodes.replica("c", max_concurrent=2)
    with client(c) as on_c:
        upstream.script(*[Reply(text=f"run {i}", delay=0.05) for i in range(8)])
        created = [
            (on_a, on_b, on_c)[i % 3].responses.create(model="m", input=f"job {i}", background=True) for i in range(8)
        ]
        for response in created:
            wait_until(lambda r=response: on_b.responses.retrieve(r.id).status == "completed")
    jobs = sorted(m["messages"][-1]["content"] for m in upstream.requests)
    assert jobs == sorted(f"job {i}" for i in range(8))


def test_concurrent_branches_from_one_parent(cluster, upstream):
    on_a, on_b, _ = cluster
    parent = on_a.responses.create(model="m", input="parent")
    results: dict[str, object] = {}

    def branch(name: str, on: openai.OpenAI) -> None:
        results[name] = on.responses.create(model="m", input=name, previous_response_id=parent.id)

    threads = [threading.Thread(target=branch, args=(n, c)) for n, c in (("left", on_a), ("right", on_b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    left, right = results["left"], results["right"]
    assert left.id != right.id
    for name, response in (("left", left), ("right", right)):
        items = on_b.responses.input_items.list(response.id, order="asc")
        assert [i.content[0].text for i in items.data] == ["parent", "echo: parent", name]


def _chain_child(on: openai.OpenAI, parent_id: str, outcome: dict[str, object]) -> None:
    try:
        outcome["chain"] = on.responses.create(model="m", input="child", previous_response_id=parent_id)
    except openai.BadRequestError as error:
        outcome["chain"] = error


def _delete(on: openai.OpenAI, parent_id: str, outcome: dict[str, object]) -> None:
    outcome["delete"] = on.responses.delete(parent_id)


def test_delete_while_chaining_is_clean(cluster, upstream):
    on_a, on_b, _ = cluster
    for round_ in range(6):
        parent = on_a.responses.create(model="m", input=f"p{round_}")
        outcome: dict[str, object] = {}
        threads = [
            threading.Thread(target=_chain_child, args=(on_b, parent.id, outcome)),
            threading.Thread(target=_delete, args=(on_a, parent.id, outcome)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with pytest.raises(openai.NotFoundError):
            on_b.responses.retrieve(parent.id)
        child = outcome["chain"]
        if isinstance(child, openai.BadRequestError):
            assert child.body["code"] == "previous_response_not_found"
        else:
            stored = on_a.responses.retrieve(child.id)
            assert stored.status == "completed" and stored.output_text


def test_dead_replica_runs_end_failed(upstream, tmp_path):
    nodes = Cluster(tmp_path, upstream.url)
    try:
        victim = nodes.replica("victim", max_concurrent=2)
        witness = nodes.replica("witness", max_concurrent=0)
        upstream.script(Reply(text="d" * 600, chunk_size=2, delay=0.05))
        with client(witness) as on_w:
            response = on_w.responses.create(model="m", input="go", background=True)
            wait_until(lambda: on_w.responses.retrieve(response.id).status == "in_progress")
            wait_until(lambda: len(upstream.requests) == 1)
            victim.kill()
            failed = wait_until(lambda: (r := on_w.responses.retrieve(response.id)).status == "failed" and r)
            assert "stopped before it finished" in failed.error.message
            types = [e.type for e in on_w.responses.retrieve(response.id, stream=True)]
            assert types[0] == "response.created" and types[-1] == "response.failed"
    finally:
        nodes.close()


def test_migrate_command_brings_a_fresh_database_up_to_date(tmp_path, upstream):
    import asyncio
    import subprocess
    import sys

    import asyncpg

    database = create_database()
    try:
        config = replica_config(tmp_path / "migrate.toml", upstream.url, database, 0)
        result = subprocess.run(
            [sys.executable, "-m", "continuo", "migrate", "--config", str(config)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert "up to date" in result.stdout

        async def tables() -> set[str]:
            connection = await asyncpg.connect(database)
            try:
                rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                version = await connection.fetchval("SELECT version_num FROM alembic_version")
            finally:
                await connection.close()
            return {row["tablename"] for row in rows} | {f"version:{version}"}

        from tests.support.migrations import head_revision

        assert {"responses", "items", "events", "api_keys", f"version:{head_revision()}"} <= asyncio.run(tables())
    finally:
        drop_database(database)
