"""Remote MCP tools run by Continuo inside one response, against our own MCP server
(made with the ``mcp`` SDK) behind the fake Chat Completions upstream."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from tests.conftest import make_config
from tests.support.fake_chat import FakeChatUpstream, Reply
from tests.support.mcp_servers import OwnMCPServer
from tests.support.servers import ServerThread


@pytest.fixture(scope="module")
def mcp() -> Iterator[OwnMCPServer]:
    server = OwnMCPServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_mcp(mcp: OwnMCPServer) -> None:
    mcp.state.reset()
    mcp.recorder.requests.clear()


@pytest.fixture(scope="module")
def open_server(upstream: FakeChatUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Continuo allowed to reach MCP servers on 127.0.0.1 (as the tests' servers are)."""
    db = tmp_path_factory.mktemp("mcp") / "continuo.db"
    config = make_config(
        upstream.url,  # type: ignore[attr-defined]
        db,
        security={"allow_private_urls": True},
        background={"poll_seconds": 0.05},
    )
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture
def oc(open_server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{open_server.url}/v1", api_key="sk-client", max_retries=0) as c:
        yield c


def tool(mcp: OwnMCPServer, **extra: Any) -> dict[str, Any]:
    return {"type": "mcp", "server_label": "t", "server_url": mcp.url, "require_approval": "never", **extra}


def types(response: Any) -> list[str]:
    return [item.type for item in response.output]


def test_a_call_runs_inside_one_response(oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__echo", '{"text": "hi"}')]), Reply(text="It said hi."))
    response = oc.responses.create(model="gpt-test", input="Echo hi", tools=[tool(mcp)])
    assert response.status == "completed"
    assert types(response) == ["mcp_list_tools", "mcp_call", "message"]
    listed = response.output[0]
    assert {t.name for t in listed.tools} >= {"echo", "add", "explode", "block"}
    call = response.output[1]
    assert (call.name, call.server_label, call.output, call.error) == ("echo", "t", "echo: hi", None)
    assert json.loads(call.arguments) == {"text": "hi"}
    assert response.output_text == "It said hi."
    assert mcp.state.calls == [("echo", {"text": "hi"})]
    # The model was offered the server's tools as namespaced functions, and saw the output.
    first, second = upstream.requests
    names = {t["function"]["name"] for t in first["tools"]}
    assert {"mcp__t__echo", "mcp__t__add"} <= names
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "mcp__t__echo"
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "echo: hi"}
    # Usage adds up both model calls.
    assert response.usage is not None and response.usage.input_tokens == 22
