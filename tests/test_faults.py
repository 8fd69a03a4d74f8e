"""Upstreams that misbehave, in every mode.

Each fault of tests/support/faults.py (connection reset, hang, HTML, odd JSON shapes,
invalid UTF-8, an error in a 200, huge lines) against each mode:

* non-streamed JSON: a 502 (504 on a timeout) whose message names the provider, and
  nothing stored;
* SSE: the stream ends with ``response.failed`` carrying the error, and the stored
  response is ``failed``;
* background: the stored response ends ``failed``, and its event stream with
  ``response.failed``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest

from continuo.api.app import create_app
from continuo.config import parse_config
from tests.support import fake_chat, fake_responses
from tests.support.fake_responses import FakeResponsesUpstream
from tests.support.faults import CHAT_FAULTS, LINE_LIMIT, RESPONSES_FAULTS, Answer, Fault
from tests.support.servers import ServerThread

MODES = ["json", "sse", "background"]


@pytest.fixture(scope="module")
def fault_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults") / "c.db"


@pytest.fixture(scope="module")
def fault_server(upstream: Any, rfake: FakeResponsesUpstream, fault_db: Path) -> Iterator[ServerThread]:
    common = {"max_retries": 0, "timeout": 0.5, "max_response_bytes": LINE_LIMIT}
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{fault_db}"},
            "background": {"poll_seconds": 0.1},
            "providers": [
                {"name": "chatfake", "type": "chat_completions", "base_url": f"{upstream.url}/v1", **common},
                {"name": "respfake", "type": "responses", "base_url": f"{rfake.url}/v1", **common},
            ],
            "models": [
                {"name": "chat-model", "provider": "chatfake"},
                {"name": "resp-model", "provider": "respfake"},
            ],
        }
    )
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture
def fclient(fault_server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{fault_server.url}/v1", api_key="k", max_retries=0) as c:
        yield c


def stored_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        count: int = conn.execute("SELECT count(*) FROM responses").fetchone()[0]
    return count


def check(client: openai.OpenAI, db: Path, model: str, provider: str, fault: Fault, mode: str) -> None:
    if mode == "json" or (mode == "sse" and fault.early):
        before = stored_count(db)
        with pytest.raises(openai.APIStatusError) as error:
            client.responses.create(model=model, input="hi", stream=mode == "sse")
        assert error.value.status_code == (504 if fault.timeout else 502), error.value.body
        body: Any = error.value.body
        assert f"'{provider}'" in body["message"], body
        assert body["type"] == "server_error"
        assert stored_count(db) == before
        return
    if mode == "sse":
        with client.responses.create(model=model, input="hi", stream=True) as stream:
            events = list(stream)
        response_id = events[0].response.id
    else:
        queued = client.responses.create(model=model, input="hi", background=True)
        with client.responses.retrieve(queued.id, stream=True) as stream:
            events = list(stream)
        response_id = queued.id
    assert events[0].type == "response.created"
    assert events[-1].type == "response.failed", [e.type for e in events]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None
    assert f"'{provider}'" in failed.error.message
    stored = client.responses.retrieve(response_id)
    assert stored.status == "failed" and stored.error is not None
    assert stored.error.message == failed.error.message


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", CHAT_FAULTS, ids=lambda f: f.name)
def test_chat_upstream_fault(fclient, fault_db, upstream, fault, mode):
    upstream.script(fake_chat.Reply(fault=fault))
    check(fclient, fault_db, "chat-model", "chatfake", fault, mode)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", RESPONSES_FAULTS, ids=lambda f: f.name)
def test_responses_upstream_fault(fclient, fault_db, rfake, fault, mode):
    rfake.reset()
    rfake.script(fake_responses.Reply(fault=fault))
    check(fclient, fault_db, "resp-model", "respfake", fault, mode)


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("choice", ["required", {"type": "function", "name": "get_weather"}], ids=["required", "named"])
def test_tool_choice_ignored_by_the_upstream_fails(fclient, upstream, choice, stream):
    """An upstream that answers in text although a call was required: a clear failure
    that names the provider, never a completed text answer."""
    upstream.script(fake_chat.Reply(text="I would rather chat."))
    if not stream:
        with pytest.raises(openai.APIStatusError) as error:
            fclient.responses.create(model="chat-model", input="hi", tools=[WEATHER], tool_choice=choice)
        assert error.value.status_code == 502
        assert "'chatfake'" in error.value.body["message"] and "tool_choice" in error.value.body["message"]
        return
    with fclient.responses.create(
        model="chat-model", input="hi", tools=[WEATHER], tool_choice=choice, stream=True
    ) as events:
        seen = list(events)
    assert seen[-1].type == "response.failed"
    assert "tool_choice" in seen[-1].response.error.message
    assert not any(e.type == "response.output_text.delta" for e in seen)  # the text was held back


def test_named_tool_choice_answered_with_another_function_fails(fclient, upstream):
    upstream.script(fake_chat.Reply(tool_calls=[("other", "{}")]))
    with pytest.raises(openai.APIStatusError) as error:
        fclient.responses.create(
            model="chat-model",
            input="hi",
            tools=[WEATHER, {**WEATHER, "name": "other"}],
            tool_choice={"type": "function", "name": "get_weather"},
        )
    assert "get_weather" in error.value.body["message"] and "'chatfake'" in error.value.body["message"]


def test_named_tool_choice_broken_in_a_stream_keeps_what_came_before(fclient, upstream):
    """The wrong call arrives with the finish in one read of the upstream: the stream
    still shows that call before it fails, and the failed response keeps it, as when the
    deltas went through one at a time."""
    upstream.script(fake_chat.Reply(tool_calls=[("other", '{"x": 1}')]))
    with fclient.responses.create(
        model="chat-model",
        input="hi",
        tools=[WEATHER, {**WEATHER, "name": "other"}],
        tool_choice={"type": "function", "name": "get_weather"},
        stream=True,
    ) as events:
        seen = list(events)
    assert seen[-1].type == "response.failed" and "get_weather" in seen[-1].response.error.message
    added = [e.item for e in seen if e.type == "response.output_item.added"]
    assert [(item.type, item.name) for item in added] == [("function_call", "other")]
    output = seen[-1].response.output
    assert [(item.type, item.name, item.arguments, item.status) for item in output] == [
        ("function_call", "other", '{"x": 1}', "incomplete")
    ]
    stored = fclient.responses.retrieve(seen[-1].response.id)
    assert stored.status == "failed" and stored.output == output


def test_a_responses_stream_is_not_read_past_its_end(fclient, rfake):
    """A Responses upstream's answer is over at ``response.completed``: what follows in the
    same read (another delta, a line that is not JSON) is not read, one read of deltas at a
    time as one delta at a time."""
    item = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hel"}]}
    done = {"type": "response.completed", "response": {"id": "r", "status": "completed", "output": [item]}}
    more = {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "late"}
    raw = b"".join(
        b"data: " + orjson.dumps(event) + b"\n\n"
        for event in ({"type": "response.output_text.delta", "output_index": 0, "delta": "Hel"}, done, more)
    )
    rfake.reset()
    answer = Answer((raw + b"data: {oops\n\n",))
    rfake.script(fake_responses.Reply(fault=Fault("after-the-end", answer, answer)))
    with fclient.responses.create(model="resp-model", input="hi", stream=True) as events:
        seen = list(events)
    assert seen[-1].type == "response.completed"
    assert "".join(e.delta for e in seen if e.type == "response.output_text.delta") == "Hel"
    assert seen[-1].response.output_text == "Hel"


def test_required_call_answered_with_a_call_passes(fclient, upstream):
    upstream.script(fake_chat.Reply(text="Let me look.", tool_calls=[("get_weather", '{"city": "Oslo"}')]))
    response = fclient.responses.create(model="chat-model", input="hi", tools=[WEATHER], tool_choice="required")
    assert [item.type for item in response.output] == ["message", "function_call"]


@pytest.mark.parametrize(
    ("status", "expected", "code"),
    [(401, 502, "upstream_error"), (403, 502, "upstream_error"), (429, 429, "upstream_rate_limited")],
)
def test_provider_key_and_rate_limit_errors_are_not_the_clients(fclient, upstream, status, expected, code):
    """The provider refusing Continuo's key is no 401 to the client (which would discard a
    good key); its rate limit is a 429 the client may retry, with a code of its own."""
    upstream.script(
        fake_chat.Reply(status=status, body=b'{"error": {"message": "Incorrect API key provided", "code": "x"}}')
    )
    with pytest.raises(openai.APIStatusError) as error:
        fclient.responses.create(model="chat-model", input="hi")
    assert error.value.status_code == expected
    body: Any = error.value.body
    assert body["code"] == code and "'chatfake'" in body["message"]


@pytest.mark.parametrize("mode", MODES)
def test_a_bug_inside_the_server_fails_the_response_cleanly(client, upstream, monkeypatch, mode):
    """Not an upstream failure: any exception while the run goes on (here the event state
    machine raising on the first delta) ends the stream with response.failed and stores
    the response as failed; non-streamed, it is an OpenAI-shaped error, not a bare 500."""
    from continuo.core.builder import ResponseBuilder

    def broken(self: ResponseBuilder, delta: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ResponseBuilder, "feed", broken)
    if mode == "json":
        with pytest.raises(openai.InternalServerError) as raised:
            client.responses.create(model="m", input="hi")
        assert raised.value.body["message"].startswith("The response failed: RuntimeError")  # type: ignore[index]
        return
    if mode == "sse":
        events = list(client.responses.create(model="m", input="hi", stream=True))
        assert [e.type for e in events][:2] == ["response.created", "response.in_progress"]
        assert events[-1].type == "response.failed"
        assert "RuntimeError" in events[-1].response.error.message
        response_id = events[-1].response.id
    else:
        response_id = client.responses.create(model="m", input="hi", background=True).id
    from tests.support.waits import wait_until

    stored = wait_until(
        lambda: (r := client.responses.retrieve(response_id)).status != "queued" and r.status != "in_progress" and r
    )
    assert stored.status == "failed" and "RuntimeError" in stored.error.message
