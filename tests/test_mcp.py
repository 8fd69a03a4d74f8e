"""Remote MCP tools run by Continuo inside one response, against our own MCP server
(made with the ``mcp`` SDK) behind the fake Chat Completions upstream."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from continuo.api.app import create_app
from tests.conftest import make_config
from tests.support.fake_chat import FakeChatUpstream, Reply
from tests.support.mcp_servers import OwnMCPServer
from tests.support.servers import ServerThread
from tests.support.spec_check import validate, validate_event


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


def stream_events(server: ServerThread, **body: Any) -> list[dict[str, Any]]:
    """Every event of a streamed create, as sent, checked against the spec and the
    stream contract."""
    events = []
    with httpx.stream("POST", f"{server.url}/v1/responses", json={**body, "stream": True}, timeout=30) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    for event in events:
        validate_event(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds.count("response.created") == 1
    assert sum(k in TERMINAL for k in kinds) == 1 and kinds[-1] in TERMINAL
    # Every item's output_item.done equals the final output at its index.
    done = {e["output_index"]: e["item"] for e in events if e["type"] == "response.output_item.done"}
    output = events[-1]["response"]["output"]
    assert done == dict(enumerate(output))
    for e in events:
        if e["type"] == "response.output_item.added":
            assert e["item"].get("arguments", "") == "" and e["item"].get("input", "") == ""
    return events


TERMINAL = {"response.completed", "response.failed", "response.incomplete", "response.cancelled"}


def test_streamed_events_follow_the_spec(
    oc: openai.OpenAI, open_server: ServerThread, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__add", '{"a": 2, "b": 3}')]), Reply(text="Five."))
    events = stream_events(open_server, model="gpt-test", input="2+3?", tools=[tool(mcp)])
    kinds = [e["type"] for e in events]
    mcp_kinds = [k for k in kinds if "mcp" in k]
    assert mcp_kinds == [
        "response.mcp_list_tools.in_progress",
        "response.mcp_list_tools.completed",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.delta",
        "response.mcp_call_arguments.done",
        "response.mcp_call.in_progress",
        "response.mcp_call.completed",
    ]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.mcp_call_arguments.delta")
    assert deltas == next(e["arguments"] for e in events if e["type"] == "response.mcp_call_arguments.done")
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["mcp_list_tools", "mcp_call", "message"]
    assert final["output"][1]["output"] == "5"
    stored = oc.responses.retrieve(final["id"])
    assert stored.model_dump(mode="json", exclude_unset=True)["output"] == final["output"]


def test_the_sdk_stream_accepts_the_whole_response(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(
        Reply(tool_calls=[("mcp__t__echo", '{"text": "a"}'), ("mcp__t__add", '{"a": 1, "b": 1}')]),
        Reply(text="Both ran."),
    )
    seen = []
    with oc.responses.stream(model="gpt-test", input="go", tools=[tool(mcp)]) as stream:
        for event in stream:
            seen.append(event.type)
        final = stream.get_final_response()
    assert seen.count("response.created") == 1 and seen[-1] == "response.completed"
    assert [item.type for item in final.output] == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    assert final.output_text == "Both ran."


def wait_until(condition: Any, timeout: float = 15) -> None:
    """Wait for something observable (never a fixed sleep)."""
    event = threading.Event()
    deadline = timeout
    while not condition():
        if deadline <= 0:
            raise AssertionError("condition not met in time")
        event.wait(0.01)
        deadline -= 0.01


def test_calls_asked_together_run_in_parallel(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    # block waits to be released; the test releases it only once echo has run, which
    # can only happen if both calls run at once.
    upstream.script(
        Reply(tool_calls=[("mcp__t__block", "{}"), ("mcp__t__echo", '{"text": "meanwhile"}')]),
        Reply(text="done"),
    )
    result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: result.update(r=oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)]))
    )
    thread.start()
    wait_until(lambda: ("echo", {"text": "meanwhile"}) in mcp.state.calls and mcp.state.started.is_set())
    mcp.state.release.set()
    thread.join(30)
    response = result["r"]
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [(c.name, c.output) for c in calls] == [("block", "released"), ("echo", "echo: meanwhile")]
    # Both outputs went back to the model, in the order it asked for them.
    tool_messages = [m for m in upstream.requests[1]["messages"] if m["role"] == "tool"]
    assert [m["content"] for m in tool_messages] == ["released", "echo: meanwhile"]


def test_a_tool_error_goes_to_the_model(oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__explode", "{}")]), Reply(text="It failed, sorry."))
    response = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)])
    assert response.status == "completed"
    call = response.output[1]
    assert call.type == "mcp_call" and call.status == "failed" and call.output is None
    assert call.error is not None
    error = call.error.model_dump() if hasattr(call.error, "model_dump") else call.error
    assert error["type"] == "mcp_tool_execution_error"
    assert "exploded" in upstream.requests[1]["messages"][-1]["content"]
    assert response.output_text == "It failed, sorry."


def test_arguments_that_are_not_json_are_a_call_error(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__echo", "{not json")]), Reply(text="ok"))
    response = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)])
    call = response.output[1]
    assert call.status == "failed" and call.error.type == "mcp_protocol_error"  # type: ignore[union-attr]
    assert mcp.state.calls == []


def test_max_tool_calls_stops_offering_the_tools(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(
        Reply(tool_calls=[("mcp__t__echo", '{"text": "1"}'), ("mcp__t__echo", '{"text": "2"}')]),
        Reply(text="enough"),
    )
    response = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)], max_tool_calls=1)
    calls = [item for item in response.output if item.type == "mcp_call"]
    assert [c.status for c in calls] == ["completed", "failed"]
    assert "max_tool_calls" in calls[1].error.message  # type: ignore[union-attr]
    assert mcp.state.calls == [("echo", {"text": "1"})]
    # The next model call was offered no MCP tool at all.
    assert "tools" not in upstream.requests[1]
    assert response.max_tool_calls == 1


def test_a_model_that_keeps_calling_stops_at_max_tool_calls(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(
        Reply(tool_calls=[("mcp__t__add", '{"a": 1, "b": 1}')]),
        Reply(tool_calls=[("mcp__t__add", '{"a": 2, "b": 2}')]),
        Reply(text="4"),
    )
    response = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)], max_tool_calls=2)
    assert types(response) == ["mcp_list_tools", "mcp_call", "mcp_call", "message"]
    assert len(upstream.requests) == 3
    assert "tools" in upstream.requests[1] and "tools" not in upstream.requests[2]


def test_a_chain_lists_the_tools_once(oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__echo", '{"text": "1"}')]), Reply(text="first"))
    first = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)])
    listings = sum(1 for method, _ in mcp.recorder.requests if method == "POST")
    upstream.script(Reply(tool_calls=[("mcp__t__echo", '{"text": "2"}')]), Reply(text="second"))
    second = oc.responses.create(model="gpt-test", input="again", tools=[tool(mcp)], previous_response_id=first.id)
    assert types(second) == ["mcp_call", "message"]
    assert second.output[0].output == "echo: 2"
    # The second turn's model call still had the tools (from the chain's list) and saw
    # the first turn's call and its output.
    second_call = upstream.requests[2]
    assert "mcp__t__echo" in {t["function"]["name"] for t in second_call["tools"]}
    contents = [m.get("content") for m in second_call["messages"]]
    assert "echo: 1" in contents
    assert listings > 0 and mcp.state.calls == [("echo", {"text": "1"}), ("echo", {"text": "2"})]
    # input_items lists what the second turn was given.
    items = [i.type for i in oc.responses.input_items.list(second.id, order="asc")]
    assert items == ["message", "mcp_list_tools", "mcp_call", "message", "message"]


def test_a_new_server_in_a_chain_is_listed(oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
    upstream.script(Reply(text="first"))
    first = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)])
    upstream.script(Reply(text="second"))
    second = oc.responses.create(
        model="gpt-test",
        input="again",
        tools=[tool(mcp), tool(mcp, server_label="u")],
        previous_response_id=first.id,
    )
    assert [(i.type, i.server_label) for i in second.output[:-1]] == [("mcp_list_tools", "u")]  # type: ignore[union-attr]


def test_allowed_tools_limit_what_is_listed_and_offered(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(text="ok"))
    response = oc.responses.create(
        model="gpt-test", input="go", tools=[tool(mcp, allowed_tools=["echo"])]
    )
    assert [t.name for t in response.output[0].tools] == ["echo"]  # type: ignore[union-attr]
    assert [t["function"]["name"] for t in upstream.requests[0]["tools"]] == ["mcp__t__echo"]
    upstream.script(Reply(text="ok"))
    oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp, allowed_tools={"read_only": True})])
    assert [t["function"]["name"] for t in upstream.requests[1]["tools"]] == ["mcp__t__echo"]


def test_output_is_cut_to_the_configured_size(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__big", '{"size": 150000}')]), Reply(text="long"))
    response = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)])
    output = response.output[1].output  # type: ignore[union-attr]
    assert output is not None and output.startswith("x" * 100_000) and "output cut: 50000" in output
    assert len(upstream.requests[1]["messages"][-1]["content"]) < 100_100
