"""MCP servers from the config, the address guard, unreachable servers, and the
reference ``server-everything`` from npm."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from continuo.api.app import create_app
from continuo.config import parse_config
from tests.support.fake_chat import FakeChatUpstream, Reply
from tests.support.mcp_servers import OwnMCPServer, everything_server
from tests.support.mcp_streams import stream_events
from tests.support.servers import ServerThread

STDIO = Path(__file__).parent / "support" / "mcp_stdio.py"


def config(upstream: FakeChatUpstream, db: Path, **sections: Any) -> Any:
    raw: dict[str, Any] = {
        "database": {"url": f"sqlite:///{db}"},
        "providers": [{"name": "fake", "type": "chat_completions", "base_url": f"{upstream.url}/v1"}],  # type: ignore[attr-defined]
        "models": [{"name": "*", "provider": "fake"}],
        **sections,
    }
    return parse_config(raw)


@pytest.fixture(scope="module")
def mcp() -> Iterator[OwnMCPServer]:
    server = OwnMCPServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def configured(
    upstream: FakeChatUpstream, mcp: OwnMCPServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """Servers by label only: our own over HTTP (its key from the environment) and over
    stdio; requests' own URLs must be on an allow-list."""
    import os

    os.environ["CONTINUO_TEST_MCP_KEY"] = "env-s3cret"
    db = tmp_path_factory.mktemp("mcpconf") / "continuo.db"
    cfg = config(
        upstream,
        db,
        mcp={"allowed_servers": ["https://mcp.example.com/"]},
        mcp_servers=[
            {
                "label": "team",
                "url": mcp.url,
                "headers_env": {"X-Key": "CONTINUO_TEST_MCP_KEY"},
                "require_approval": "never",
            },
            {
                "label": "local",
                "command": sys.executable,
                "args": [str(STDIO)],
                "require_approval": "never",
                "allowed_tools": ["add"],
                "description": "Test tools over stdio",
            },
        ],
    )
    running = ServerThread(create_app(cfg)).start()
    yield running
    running.stop()


def client_for(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-client", max_retries=0)


def test_a_configured_server_by_label(configured: ServerThread, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
    upstream.script(Reply(tool_calls=[("mcp__team__echo", '{"text": "hi"}')]), Reply(text="ok"))
    with client_for(configured) as client:
        response = client.responses.create(
            model="m", input="go", tools=[{"type": "mcp", "server_label": "team", "require_approval": "never"}]
        )
    assert [i.type for i in response.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert response.output[1].output == "echo: hi"  # type: ignore[union-attr]
    assert mcp.recorder.requests[-1][1]["x-key"] == "env-s3cret"


def test_a_configured_stdio_server(configured: ServerThread, upstream: FakeChatUpstream) -> None:
    upstream.script(Reply(tool_calls=[("mcp__local__add", '{"a": 4, "b": 5}')]), Reply(text="nine"))
    with client_for(configured) as client:
        response = client.responses.create(model="m", input="go", tools=[{"type": "mcp", "server_label": "local"}])
    # The config's settings apply: only add is listed, and it runs without approval.
    assert [t.name for t in response.output[0].tools] == ["add"]  # type: ignore[union-attr]
    assert response.output[1].output == "9"  # type: ignore[union-attr]
    assert response.tools[0].require_approval == "never"  # type: ignore[union-attr]


def test_urls_off_the_allow_list_are_refused(configured: ServerThread) -> None:
    with client_for(configured) as client, pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="m",
            input="go",
            tools=[{"type": "mcp", "server_label": "x", "server_url": "https://evil.example.net/mcp"}],
        )
    assert caught.value.body["code"] == "url_not_allowed"  # type: ignore[index]
    assert caught.value.body["param"] == "tools[0].server_url"  # type: ignore[index]


def test_an_unknown_label_without_url_is_refused(configured: ServerThread) -> None:
    with client_for(configured) as client, pytest.raises(openai.BadRequestError):
        client.responses.create(model="m", input="go", tools=[{"type": "mcp", "server_label": "nobody"}])


def test_private_addresses_are_refused_by_default(client: openai.OpenAI, mcp: OwnMCPServer) -> None:
    mcp.recorder.requests.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(
            model="gpt-test", input="go", tools=[{"type": "mcp", "server_label": "t", "server_url": mcp.url}]
        )
    assert caught.value.body["code"] == "url_not_allowed"  # type: ignore[index]
    assert mcp.recorder.requests == []


@pytest.fixture(scope="module")
def open_server(upstream: FakeChatUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    db = tmp_path_factory.mktemp("mcpopen") / "continuo.db"
    running = ServerThread(create_app(config(upstream, db, security={"allow_private_urls": True}))).start()
    yield running
    running.stop()


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"


def test_an_unreachable_server_is_a_clear_error(open_server: ServerThread, upstream: FakeChatUpstream) -> None:
    dead = {"type": "mcp", "server_label": "dead", "server_url": _closed_port(), "require_approval": "never"}
    answer = httpx.post(
        f"{open_server.url}/v1/responses", json={"model": "m", "input": "go", "tools": [dead]}, timeout=30
    )
    assert answer.status_code == 424
    error = answer.json()["error"]
    assert error["type"] == "external_connector_error" and "'dead'" in error["message"]
    events = stream_events(open_server, model="m", input="go", tools=[dead])
    kinds = [e["type"] for e in events]
    assert "response.mcp_list_tools.failed" in kinds and kinds[-1] == "response.failed"
    listed = events[-1]["response"]["output"][0]
    assert listed["type"] == "mcp_list_tools" and listed["error"]
    assert upstream.requests == []  # the model was never called


def test_server_everything(open_server: ServerThread, upstream: FakeChatUpstream) -> None:
    with everything_server() as url:
        if url is None:
            pytest.fail("server-everything is not installed and npm is missing (scripts/install-mcp-everything.sh)")
        spec = {"type": "mcp", "server_label": "everything", "server_url": url, "require_approval": "never"}
        upstream.script(
            Reply(
                tool_calls=[
                    ("mcp__everything__echo", '{"message": "ping"}'),
                    ("mcp__everything__get-sum", '{"a": 2, "b": 40}'),
                ]
            ),
            Reply(text="done"),
        )
        events = stream_events(open_server, model="m", input="go", tools=[spec])
        final = events[-1]["response"]
        assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
        names = {t["name"] for t in final["output"][0]["tools"]}
        assert {"echo", "get-sum"} <= names
        echo, total = final["output"][1], final["output"][2]
        assert "ping" in echo["output"] and "42" in total["output"]
        # A chained turn calls again without listing.
        upstream.script(Reply(tool_calls=[("mcp__everything__echo", '{"message": "again"}')]), Reply(text="ok"))
        with client_for(open_server) as client:
            second = client.responses.create(model="m", input="more", tools=[spec], previous_response_id=final["id"])
        assert [i.type for i in second.output] == ["mcp_call", "message"]
        assert json.loads(second.output[0].arguments) == {"message": "again"}  # type: ignore[union-attr]


def test_server_everything_over_sse(open_server: ServerThread, upstream: FakeChatUpstream) -> None:
    with everything_server("sse") as url:
        if url is None:
            pytest.fail("server-everything is not installed and npm is missing (scripts/install-mcp-everything.sh)")
        spec = {"type": "mcp", "server_label": "legacy", "server_url": url, "require_approval": "never"}
        upstream.script(Reply(tool_calls=[("mcp__legacy__echo", '{"message": "over sse"}')]), Reply(text="ok"))
        with client_for(open_server) as client:
            response = client.responses.create(model="m", input="go", tools=[spec])  # type: ignore[list-item]
        assert [i.type for i in response.output] == ["mcp_list_tools", "mcp_call", "message"]
        assert "over sse" in (response.output[1].output or "")  # type: ignore[union-attr]


def test_a_stateless_responses_upstream_gets_functions(tmp_path: Path, mcp: OwnMCPServer) -> None:
    from tests.support.fake_responses import FakeResponsesUpstream
    from tests.support.fake_responses import Reply as RReply

    fake = FakeResponsesUpstream()
    upstream = ServerThread(fake.app).start()
    cfg = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'r.db'}"},
            "security": {"allow_private_urls": True},
            "providers": [{"name": "r", "type": "responses", "base_url": f"{upstream.url}/v1", "max_retries": 0}],
            "models": [{"name": "*", "provider": "r"}],
        }
    )
    running = ServerThread(create_app(cfg)).start()
    try:
        fake.script(RReply(tool_calls=[("mcp__t__echo", '{"text": "up"}')]), RReply(text="fine"))
        spec = {"type": "mcp", "server_label": "t", "server_url": mcp.url, "require_approval": "never"}
        with client_for(running) as client:
            response = client.responses.create(model="m", input="go", tools=[spec])  # type: ignore[list-item]
        assert [i.type for i in response.output] == ["mcp_list_tools", "mcp_call", "message"]
        assert response.output[1].output == "echo: up"  # type: ignore[union-attr]
        first, second = fake.requests
        assert all(t["type"] == "function" for t in first["tools"])  # never the mcp tool itself
        assert "mcp__t__echo" in {t["name"] for t in first["tools"]}
        kinds = [item["type"] for item in second["input"]]
        assert kinds[-2:] == ["function_call", "function_call_output"]
        assert second["input"][-1]["output"] == "echo: up"
    finally:
        running.stop()
        upstream.stop()
