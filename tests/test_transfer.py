"""``continuo export`` and ``continuo import``: a database goes SQLite → PostgreSQL → SQLite
and comes out the same: every response, its input items, its stream events, chains that
keep working, conversations; importing twice changes nothing."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from continuo.api.app import create_app
from continuo.cli import since_us
from continuo.config import ConfigError, load_config
from tests.support.configs import write_config
from tests.support.fake_chat import Reply
from tests.support.postgres import create_database, drop_database
from tests.support.servers import ServerThread
from tests.support.waits import wait_until

KEYS = (
    '[[keys]]\nproject = "alpha"\nenv = "CONTINUO_TEST_MOVE_ALPHA"\n\n'
    '[[keys]]\nproject = "beta"\nenv = "CONTINUO_TEST_MOVE_BETA"\n\n'
    "[background]\nmax_concurrent = 2\npoll_seconds = 0.2\n"
)
ALPHA, BETA = "sk-move-alpha", "sk-move-beta"


def config_for(tmp: Path, name: str, database_url: str, upstream_url: str) -> Path:
    return write_config(tmp / f"{name}.toml", database_url=database_url, upstream_url=upstream_url, extra=KEYS)


def serve(config: Path) -> ServerThread:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTINUO_TEST_MOVE_ALPHA", ALPHA)
        patch.setenv("CONTINUO_TEST_MOVE_BETA", BETA)
        return ServerThread(create_app(load_config(config))).start()


def cli(*args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "continuo", *args], input=stdin, capture_output=True, check=check)


def sdk(server: ServerThread, key: str = ALPHA) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def populate(server: ServerThread, upstream: Any) -> dict[str, list[str]]:
    """Chains with a branch and tool calls, a background run, a conversation (one of whose
    responses is deleted), metadata, two projects. The ids of each project's responses and
    its conversations."""
    made: dict[str, list[str]] = {"alpha": [], "beta": [], "conversations": []}
    with sdk(server) as alpha, sdk(server, BETA) as beta:
        one = alpha.responses.create(model="m-a", input="my name is Ada", metadata={"k": "v"}, instructions="be brief")
        upstream.script(Reply(tool_calls=[("get_weather", '{"city": "Oslo"}')]))
        two = alpha.responses.create(
            model="m-a",
            input=[{"role": "user", "content": [{"type": "input_text", "text": "weather?"}]}],
            previous_response_id=one.id,
            tools=[{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
        )
        call = next(item for item in two.output if item.type == "function_call")
        three = alpha.responses.create(
            model="m-a",
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
            previous_response_id=two.id,
        )
        branch = alpha.responses.create(model="m-b", input="a branch", previous_response_id=one.id)
        upstream.script(Reply(text="slow background answer", chunk_size=3))
        job = alpha.responses.create(model="m-a", input="in the background", background=True)
        wait_until(lambda: alpha.responses.retrieve(job.id).status == "completed")
        conversation = alpha.conversations.create(metadata={"topic": "t"}, items=[{"role": "user", "content": "hi"}])
        in_conv = alpha.responses.create(model="m-a", input="in a conversation", conversation=conversation.id)
        gone = alpha.responses.create(model="m-a", input="soon deleted", conversation=conversation.id)
        alpha.responses.delete(gone.id)
        mine = beta.responses.create(model="m-a", input="beta's own")
        made["alpha"] = [one.id, two.id, three.id, branch.id, job.id, in_conv.id]
        made["beta"] = [mine.id]
        made["conversations"] = [conversation.id]
    return made


def snapshot(server: ServerThread, made: dict[str, list[str]]) -> dict[str, Any]:
    """Everything a client can read of what ``populate`` made."""
    seen: dict[str, Any] = {}
    for project, key in (("alpha", ALPHA), ("beta", BETA)):
        with sdk(server, key) as client:
            for response_id in made[project]:
                seen[response_id] = client.get(f"/responses/{response_id}", cast_to=object)
                items = client.responses.input_items.list(response_id, limit=2, order="asc")
                seen[f"{response_id}/input_items"] = [item.model_dump() for item in items]  # every page
                seen[f"{response_id}/graph"] = client.get(f"/responses/{response_id}/graph", cast_to=object)
            seen[f"{project}/list"] = client.get("/responses", cast_to=object, options={"params": {"limit": 100}})
            seen[f"{project}/search"] = client.get("/responses", cast_to=object, options={"params": {"q": "ada"}})
            if project == "alpha":
                for cid in made["conversations"]:
                    seen[cid] = client.conversations.retrieve(cid).model_dump()
                    listed = client.conversations.items.list(cid, order="asc", limit=2)
                    seen[f"{cid}/items"] = [item.model_dump() for item in listed]
                background = made["alpha"][4]
                replay = client.get(f"/responses/{background}", cast_to=str, options={"params": {"stream": "true"}})
                seen[f"{background}/events"] = replay
    return seen


@pytest.fixture
def source(upstream, tmp_path) -> Iterator[tuple[Path, ServerThread, dict[str, list[str]]]]:
    config = config_for(tmp_path, "source", f"sqlite:///{tmp_path / 'source.db'}", upstream.url)
    server = serve(config)
    made = populate(server, upstream)
    upstream.reset()
    yield config, server, made
    server.stop()


def test_sqlite_to_postgresql_to_sqlite_is_lossless(source, upstream, tmp_path):
    config, server, made = source
    before = snapshot(server, made)
    first = cli("export", "--config", str(config)).stdout
    lines = [orjson.loads(line) for line in first.splitlines()]
    assert [line["object"] for line in lines] == ["continuo.export.response"] * 7 + ["continuo.export.conversation"]
    pg = create_database()
    try:
        pg_config = config_for(tmp_path, "pg", pg, upstream.url)
        (tmp_path / "first.jsonl").write_bytes(first)
        cli("import", "--config", str(pg_config), "--in", str(tmp_path / "first.jsonl"))
        second = cli("export", "--config", str(pg_config), "--out", str(tmp_path / "second.jsonl"))
        assert second.stdout == b"" and (tmp_path / "second.jsonl").read_bytes() == first
        pg_server = serve(pg_config)
        try:
            assert snapshot(pg_server, made) == before
        finally:
            pg_server.stop()
    finally:
        drop_database(pg)
    target = config_for(tmp_path, "target", f"sqlite:///{tmp_path / 'target.db'}", upstream.url)
    imported = cli("import", "--config", str(target), stdin=(tmp_path / "second.jsonl").read_bytes())
    assert b"imported 7 response(s) and 1 conversation(s)" in imported.stderr
    again = cli("import", "--config", str(target), "--in", str(tmp_path / "second.jsonl"))
    assert b"imported 0 response(s) and 0 conversation(s); already present, left as they are: 7" in again.stderr
    assert cli("export", "--config", str(target)).stdout == first

    copy = serve(target)
    try:
        assert snapshot(copy, made) == before
        # The chain goes on from the copy: the model gets the whole history.
        with sdk(copy) as alpha:
            alpha.responses.create(model="m-a", input="and now?", previous_response_id=made["alpha"][2])
        contents = [str(m.get("content")) for m in upstream.last["messages"]]
        assert contents[0] == "be brief" or "my name is Ada" in contents[0]
        assert "my name is Ada" in contents and contents[-1] == "and now?"
        assert any(m.get("tool_calls") for m in upstream.last["messages"])
    finally:
        copy.stop()


def test_export_by_project_and_since(source, tmp_path):
    config, _server, made = source
    exported = cli("export", "--config", str(config), "--project", "beta").stdout
    beta = [orjson.loads(line) for line in exported.splitlines()]
    assert [line["id"] for line in beta] == made["beta"]
    everything = [orjson.loads(line) for line in cli("export", "--config", str(config)).stdout.splitlines()]
    cut = max(line["created_at_us"] for line in everything) // 1_000_000
    later = cli("export", "--config", str(config), "--since", str(cut)).stdout.splitlines()
    expected = [line["id"] for line in everything if line.get("created_at_us", 0) >= cut * 1_000_000]
    assert [orjson.loads(line)["id"] for line in later] == expected
    far = cli("export", "--config", str(config), "--since", "2999-01-01T00:00:00Z").stdout
    assert far == b""


def test_since_reads_seconds_and_iso_dates():
    assert since_us("1700000000") == 1_700_000_000_000_000
    assert since_us("1700000000.5") == 1_700_000_000_500_000
    assert since_us("2023-11-14") == 1_699_920_000_000_000
    assert since_us("2023-11-14T22:13:20+00:00") == 1_700_000_000_000_000
    with pytest.raises(ConfigError):
        since_us("last week")


def test_import_refuses_a_bad_line_and_says_where(tmp_path, upstream):
    target = config_for(tmp_path, "bad", f"sqlite:///{tmp_path / 'bad.db'}", upstream.url)
    bad = b'{"object": "continuo.export.response", "version": 1}\n'
    answer = cli("import", "--config", str(target), stdin=b"\n" + bad, check=False)
    assert answer.returncode == 1 and b"-:2: 'id' is missing" in answer.stderr
    answer = cli("import", "--config", str(target), stdin=b"not json\n", check=False)
    assert answer.returncode == 1 and b"-:1:" in answer.stderr
    future = b'{"object": "continuo.export.response", "version": 9, "id": "resp_x"}\n'
    answer = cli("import", "--config", str(target), stdin=future, check=False)
    assert answer.returncode == 1 and b"unsupported 'version'" in answer.stderr
