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
from tests.support.configs import make_config
from tests.support.fake_chat import FakeChatUpstream, Reply
from tests.support.mcp_servers import OwnMCPServer
from tests.support.mcp_streams import stream_events
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


def test_calls_asked_together_run_in_parallel(oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
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
    response = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp, allowed_tools=["echo"])])
    assert [t.name for t in response.output[0].tools] == ["echo"]  # type: ignore[union-attr]
    assert [t["function"]["name"] for t in upstream.requests[0]["tools"]] == ["mcp__t__echo"]
    upstream.script(Reply(text="ok"))
    oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp, allowed_tools={"read_only": True})])
    assert [t["function"]["name"] for t in upstream.requests[1]["tools"]] == ["mcp__t__echo"]


def test_output_is_cut_to_the_configured_size(oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__big", '{"size": 150000}')]), Reply(text="long"))
    response = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)])
    output = response.output[1].output  # type: ignore[union-attr]
    assert output is not None and output.startswith("x" * 100_000) and "output cut: 50000" in output
    assert len(upstream.requests[1]["messages"][-1]["content"]) < 100_100


def approval_tool(mcp: OwnMCPServer, **extra: Any) -> dict[str, Any]:
    spec = tool(mcp, **extra)
    spec.pop("require_approval")
    return spec


def test_a_call_needing_approval_ends_the_response_then_runs_when_approved(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__add", '{"a": 20, "b": 22}')]))
    first = oc.responses.create(model="gpt-test", input="add", tools=[approval_tool(mcp)])
    assert first.status == "completed"
    assert types(first) == ["mcp_list_tools", "mcp_approval_request"]
    asked = first.output[1]
    assert (asked.name, asked.server_label, json.loads(asked.arguments)) == ("add", "t", {"a": 20, "b": 22})  # type: ignore[union-attr]
    assert mcp.state.calls == []
    upstream.script(Reply(text="42 it is."))
    second = oc.responses.create(
        model="gpt-test",
        previous_response_id=first.id,
        tools=[approval_tool(mcp)],
        input=[{"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": True}],
    )
    assert types(second) == ["mcp_call", "message"]
    call = second.output[0]
    assert (call.output, call.approval_request_id) == ("42", asked.id)  # type: ignore[union-attr]
    assert mcp.state.calls == [("add", {"a": 20, "b": 22})]
    assert upstream.requests[1]["messages"][-1]["content"] == "42"
    items = [i.type for i in oc.responses.input_items.list(second.id, order="asc")]
    assert items[-1] == "mcp_approval_response"
    # Answering the same approval again does not run the call twice.
    upstream.script(Reply(text="again"))
    oc.responses.create(
        model="gpt-test",
        previous_response_id=second.id,
        tools=[approval_tool(mcp)],
        input=[{"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": True}],
    )
    assert len(mcp.state.calls) == 1


def test_a_refused_call_is_not_run_and_the_model_is_told(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__echo", '{"text": "x"}')]))
    first = oc.responses.create(model="gpt-test", input="go", tools=[approval_tool(mcp)])
    asked = first.output[1]
    upstream.script(Reply(text="Understood."))
    second = oc.responses.create(
        model="gpt-test",
        previous_response_id=first.id,
        tools=[approval_tool(mcp)],
        input=[{"type": "mcp_approval_response", "approval_request_id": asked.id, "approve": False, "reason": "no"}],
    )
    assert types(second) == ["message"]
    assert mcp.state.calls == []
    told = upstream.requests[1]["messages"][-1]
    assert told["role"] == "tool" and "did not approve" in told["content"] and "Reason: no" in told["content"]


def test_approval_in_the_input_without_a_chain(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__echo", '{"text": "stateless"}')]))
    first = oc.responses.create(model="gpt-test", input="go", tools=[approval_tool(mcp)], store=False)
    history = [item.model_dump(exclude_none=True) for item in first.output]
    upstream.script(Reply(text="fine"))
    second = oc.responses.create(
        model="gpt-test",
        tools=[approval_tool(mcp)],
        input=[
            {"role": "user", "content": "go"},
            *history,
            {"type": "mcp_approval_response", "approval_request_id": history[1]["id"], "approve": True},
        ],
    )
    # The list came in the input: not listed again; the approved call ran.
    assert types(second) == ["mcp_call", "message"]
    assert second.output[0].output == "echo: stateless"  # type: ignore[union-attr]


def test_require_approval_filters(oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
    rule = {"never": {"tool_names": ["echo"]}}
    upstream.script(
        Reply(tool_calls=[("mcp__t__echo", '{"text": "free"}'), ("mcp__t__add", '{"a": 1, "b": 2}')]),
    )
    response = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp, require_approval=rule)])
    assert types(response) == ["mcp_list_tools", "mcp_call", "mcp_approval_request"]
    assert mcp.state.calls == [("echo", {"text": "free"})]
    # The response ended at the approval: no second model call.
    assert len(upstream.requests) == 1


def test_headers_are_sent_but_never_stored_echoed_or_logged(
    oc: openai.OpenAI,
    upstream: FakeChatUpstream,
    mcp: OwnMCPServer,
    open_server: ServerThread,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_tool = tool(mcp, headers={"X-Api-Key": "hdr-s3cret"}, authorization="tok-s3cret")
    upstream.script(Reply(tool_calls=[("mcp__t__echo", '{"text": "a"}')]), Reply(text="ok"))
    response = oc.responses.create(model="gpt-test", input="go", tools=[secret_tool])
    sent = [headers for method, headers in mcp.recorder.requests if method == "POST"]
    assert sent and all(h.get("x-api-key") == "hdr-s3cret" for h in sent)
    assert all(h.get("authorization") == "Bearer tok-s3cret" for h in sent)
    echoed = response.tools[0].model_dump()  # type: ignore[union-attr]
    assert echoed["headers"] == {"X-Api-Key": "<redacted>"} and echoed["authorization"] == "<redacted>"
    # Background: queued without them, run with them.
    upstream.script(Reply(tool_calls=[("mcp__t__echo", '{"text": "b"}')]), Reply(text="ok"))
    job = oc.responses.create(model="gpt-test", input="go", tools=[secret_tool], background=True)
    wait_until(lambda: oc.responses.retrieve(job.id).status == "completed")
    assert oc.responses.retrieve(job.id).output[1].output == "echo: b"  # type: ignore[union-attr]
    assert mcp.recorder.requests[-1][1].get("x-api-key") == "hdr-s3cret"
    db = Path(str(open_server.app.state.config.database.url).removeprefix("sqlite:///"))
    for path in db.parent.glob(db.name + "*"):
        data = path.read_bytes()
        assert b"s3cret" not in data
    assert "s3cret" not in caplog.text
    assert "s3cret" not in json.dumps(oc.responses.retrieve(response.id).model_dump())


def test_background_cancel_stops_the_loop_and_closes_the_session(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__block", "{}")]), Reply(text="never asked"))
    job = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)], background=True)
    assert mcp.state.started.wait(15)
    cancelled = oc.responses.cancel(job.id)
    assert cancelled.status == "cancelled"
    call = next(item for item in cancelled.output if item.type == "mcp_call")
    assert call.status == "incomplete" and call.output is None  # type: ignore[union-attr]
    assert len(upstream.requests) == 1  # the model was not called again
    # The session was closed: the call running on the server was stopped.
    assert mcp.state.cancelled.wait(15)
    events = list(oc.responses.retrieve(job.id, stream=True))
    assert events[-1].type == "response.cancelled"
    assert sum(e.type == "response.mcp_call.in_progress" for e in events) == 1


def test_a_later_turn_without_the_tool_still_sees_the_calls(
    oc: openai.OpenAI, upstream: FakeChatUpstream, mcp: OwnMCPServer
) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__echo", '{"text": "remember me"}')]), Reply(text="ok"))
    first = oc.responses.create(model="gpt-test", input="go", tools=[tool(mcp)])
    upstream.script(Reply(text="sure"))
    oc.responses.create(model="gpt-test", input="what did the tool say?", previous_response_id=first.id)
    messages = upstream.requests[-1]["messages"]
    assert {"role": "tool", "tool_call_id": first.output[1].id, "content": "echo: remember me"} in messages


def test_a_streamed_approval_request(open_server: ServerThread, upstream: FakeChatUpstream, mcp: OwnMCPServer) -> None:
    upstream.script(Reply(tool_calls=[("mcp__t__add", '{"a": 1, "b": 2}')]))
    events = stream_events(open_server, model="gpt-test", input="add", tools=[approval_tool(mcp)])
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert [i["type"] for i in final["output"]] == ["mcp_list_tools", "mcp_approval_request"]
    assert not any(e["type"].startswith("response.mcp_call") for e in events)
    assert mcp.state.calls == []
