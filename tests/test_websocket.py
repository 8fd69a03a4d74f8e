"""WebSocket mode on /v1/responses, with a plain WebSocket client (the `websockets`
package): the events, continuation, the connection-local cache, generate: false, errors.

Every event received is checked against both specs (tests/support/sockets.py).
"""

from __future__ import annotations

import threading

import openai
import pytest

from tests.support.fake_chat import Reply
from tests.support.sockets import TERMINAL, open_socket
from tests.support.waits import wait_until


def text_of(events: list[dict]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


def sse_events(client: openai.OpenAI, **body) -> list[dict]:
    with client.responses.create(stream=True, **body) as stream:
        return [event.model_dump(mode="json", exclude_unset=True) for event in stream]


def test_a_response_is_the_sse_stream_in_text_frames(server, upstream, client):
    upstream.script(Reply(text="Hello over a socket."), Reply(text="Hello over a socket."))
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="hi")
        events = ws.response()
    sse = sse_events(client, model="gpt-test", input="hi")
    assert [e["type"] for e in events] == [e["type"] for e in sse]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert text_of(events) == "Hello over a socket."
    assert all("stream_id" not in e for e in events)
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["background"] is False
    # The upstream call streamed, as for an SSE client.
    assert upstream.requests[0]["stream"] is True
    # Stored (the default), so HTTP sees it.
    assert client.responses.retrieve(final["id"]).output_text == "Hello over a socket."


def test_several_responses_one_after_another_on_one_socket(server, upstream):
    upstream.script(*(Reply(text=f"answer {n}") for n in range(3)))
    with open_socket(server.url) as ws:
        answers = []
        for n in range(3):
            ws.create(model="gpt-test", input=f"question {n}", store=False)
            answers.append(text_of(ws.response()))
    assert answers == ["answer 0", "answer 1", "answer 2"]


def test_stream_and_background_are_refused_and_the_socket_stays_usable(server, upstream):
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="x", background=True)
        error = ws.error()
        assert error["status"] == 400
        assert error["error"]["param"] == "background" and error["error"]["code"] == "unsupported_parameter"
        ws.create(model="gpt-test", input="x", stream=False)
        assert ws.error()["error"]["param"] == "stream"
        # stream: true is what the mode does anyway (Codex and the Agents SDK send it).
        ws.create(model="gpt-test", input="still here", stream=True, background=False)
        assert text_of(ws.response()) == "echo: still here"
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("this is not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('{"model": "gpt-test"}', "missing_required_parameter", "type"),
        ('{"type": "session.update"}', "invalid_value", "type"),
        (b'{"type": "response.create"}', "invalid_frame", None),
        ('{"type": "response.create", "stream_id": "no spaces"}', "invalid_value", "stream_id"),
        ('{"type": "response.create", "input": "x"}', "missing_required_parameter", "model"),
        ('{"type": "response.create", "model": "gpt-test", "input": "x", "temperature": 9}', None, "temperature"),
        (
            '{"type": "response.create", "model": "gpt-test", "input": "x", "generate": "no"}',
            "invalid_type",
            "generate",
        ),
    ],
)
def test_a_malformed_frame_gets_an_error_event_and_the_socket_stays_usable(server, upstream, frame, code, param):
    with open_socket(server.url) as ws:
        ws.send(frame)
        error = ws.error()
        assert error["status"] == 400 and error["error"]["type"] == "invalid_request_error"
        assert error["error"]["param"] == param
        if code is not None:
            assert error["error"]["code"] == code
        ws.create(model="gpt-test", input="after the error")
        assert text_of(ws.response()) == "echo: after the error"


def test_errors_carry_the_stream_id_of_their_lane(server, upstream):
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="x", previous_response_id="resp_nope", stream_id="lane.1")
        error = ws.error("lane.1")
    assert error["stream_id"] == "lane.1"
    assert error["error"]["code"] == "previous_response_not_found"
    assert error["error"]["param"] == "previous_response_id"


def test_store_false_continues_on_the_same_socket_only(server, upstream, client):
    upstream.script(Reply(text="My name is noted."), Reply(text="You are Ada."))
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="My name is Ada.", store=False, instructions="Be brief.")
        first = ws.response()[-1]["response"]
        ws.create(model="gpt-test", input="Who am I?", store=False, previous_response_id=first["id"])
        second = ws.response()
        assert text_of(second) == "You are Ada."
        assert second[-1]["response"]["previous_response_id"] == first["id"]
    # The model saw the whole context, though the socket sent only the new input (and, as
    # over HTTP, instructions do not carry over).
    assert upstream.requests[-1]["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "My name is noted."},
        {"role": "user", "content": "Who am I?"},
    ]
    # Another socket does not have it, nor does HTTP.
    with open_socket(server.url) as other:
        other.create(model="gpt-test", input="Who am I?", store=False, previous_response_id=first["id"])
        error = other.error()
    assert error["status"] == 400 and error["error"]["code"] == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as raised:
        client.responses.create(model="gpt-test", input="Who am I?", previous_response_id=first["id"])
    assert raised.value.code == "previous_response_not_found"


def test_a_stored_continuation_of_a_cached_response_keeps_its_whole_context(server, upstream, client):
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="one", store=False)
        first = ws.response()[-1]["response"]
        ws.create(model="gpt-test", input="two", previous_response_id=first["id"])
        second = ws.response()[-1]["response"]
    # Its parent is nowhere in the store, yet HTTP can list its context and continue it.
    items = client.responses.input_items.list(second["id"], order="asc").data
    assert [item.type for item in items] == ["message", "message", "message"]
    client.responses.create(model="gpt-test", input="three", previous_response_id=second["id"])
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == [
        "one",
        "echo: one",
        "two",
        "echo: two",
        "three",
    ]


def test_stored_responses_chain_across_sockets_and_http(server, upstream, client):
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="first", store=True)
        first = ws.response()[-1]["response"]
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="second", previous_response_id=first["id"])
        second = ws.response()[-1]["response"]
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == ["first", "echo: first", "second"]
    over_http = client.responses.create(model="gpt-test", input="third", previous_response_id=second["id"])
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="fourth", previous_response_id=over_http.id)
        assert ws.response()[-1]["type"] == "response.completed"
    assert [m["content"] for m in upstream.requests[-1]["messages"]][-2:] == ["echo: third", "fourth"]


def test_a_failed_continuation_evicts_the_id_it_continued(server, upstream):
    upstream.script(Reply(tool_calls=[("lookup", '{"q": "x"}')]))
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="look x up", store=False, tools=tools)
        first = ws.response()[-1]["response"]
        call = first["output"][0]
        assert call["type"] == "function_call"
        wrong = {"type": "function_call_output", "call_id": "call_unknown", "output": "1"}
        ws.create(model="gpt-test", input=[wrong], store=False, tools=tools, previous_response_id=first["id"])
        error = ws.error()
        assert error["error"]["message"] == "No tool call found for function call output with call_id call_unknown."
        assert error["error"]["param"] == "input"
        right = {"type": "function_call_output", "call_id": call["call_id"], "output": "1"}
        ws.create(model="gpt-test", input=[right], store=False, tools=tools, previous_response_id=first["id"])
        assert ws.error()["error"]["code"] == "previous_response_not_found"
    assert len(upstream.requests) == 1


def test_a_response_that_fails_evicts_the_id_it_continued(server, upstream):
    upstream.script(Reply(text="kept"), Reply(error_after=1))
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="one", store=False)
        first = ws.response()[-1]["response"]
        ws.create(model="gpt-test", input="two", store=False, previous_response_id=first["id"])
        assert ws.response()[-1]["type"] == "response.failed"
        ws.create(model="gpt-test", input="three", store=False, previous_response_id=first["id"])
        assert ws.error()["error"]["code"] == "previous_response_not_found"


def test_a_tool_loop_over_one_socket_sends_only_new_items(server, upstream):
    upstream.script(Reply(tool_calls=[("lookup", '{"q": "x"}')]), Reply(text="x is 1"))
    tools = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="what is x?", store=False, tools=tools)
        first = ws.response()
        call = first[-1]["response"]["output"][0]
        done = [e for e in first if e["type"] == "response.function_call_arguments.done"]
        assert done[0]["arguments"] == '{"q": "x"}'
        output = {"type": "function_call_output", "call_id": call["call_id"], "output": "1"}
        ws.create(
            model="gpt-test", input=[output], store=False, tools=tools, previous_response_id=first[-1]["response"]["id"]
        )
        assert text_of(ws.response()) == "x is 1"
    messages = upstream.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool"]
    assert messages[1]["tool_calls"][0]["id"] == call["call_id"] and messages[2]["tool_call_id"] == call["call_id"]


def test_generate_false_prepares_a_response_without_calling_the_model(server, upstream, client):
    with open_socket(server.url) as ws:
        ws.create(
            model="gpt-test", input="Remember: the code is 42.", instructions="Be brief.", store=False, generate=False
        )
        warm = ws.response()
        assert len(upstream.requests) == 0
        assert [e["type"] for e in warm] == ["response.created", "response.in_progress", "response.completed"]
        prepared = warm[-1]["response"]
        assert prepared["output"] == [] and prepared["status"] == "completed"
        assert prepared["usage"]["total_tokens"] == 0
        ws.create(
            model="gpt-test",
            input="What is the code?",
            instructions="Be brief.",
            store=False,
            previous_response_id=prepared["id"],
        )
        ws.response()
    assert upstream.requests[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Remember: the code is 42."},
        {"role": "user", "content": "What is the code?"},
    ]
    # A stored warm-up is stored like any response, and chains over HTTP.
    with open_socket(server.url) as ws:
        ws.create(model="gpt-test", input="stored warm-up", generate=False)
        stored = ws.response()[-1]["response"]
    assert client.responses.retrieve(stored["id"]).status == "completed"
    client.responses.create(model="gpt-test", input="next", previous_response_id=stored["id"])
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == ["stored warm-up", "next"]


def test_lanes_run_side_by_side_and_one_lane_is_first_in_first_out(server, upstream):
    hold = threading.Event()
    upstream.script(Reply(text="slow one", hold=hold), Reply(text="bee"), Reply(text="two"))
    try:
        with open_socket(server.url) as ws:
            ws.create(model="gpt-test", input="a1", store=False, stream_id="a")
            wait_until(lambda: len(upstream.requests) == 1)
            ws.create(model="gpt-test", input="a2", store=False, stream_id="a")
            ws.create(model="gpt-test", input="b1", store=False, stream_id="b")
            # Lane b answers while lane a's first response is still running...
            lane_b = ws.response("b")
            assert text_of(lane_b) == "bee" and all(e["stream_id"] == "b" for e in lane_b)
            # ...and lane a's second request waits its turn.
            assert [r["messages"][-1]["content"] for r in upstream.requests] == ["a1", "b1"]
            hold.set()
            first = ws.response("a")
            second = ws.response("a")
    finally:
        hold.set()
    assert text_of(first) == "slow one" and text_of(second) == "two"
    assert [r["messages"][-1]["content"] for r in upstream.requests] == ["a1", "b1", "a2"]
    a_events = [e for e in ws.received if e.get("stream_id") == "a"]
    assert a_events == first + second
    assert [e["sequence_number"] for e in second] == list(range(len(second)))


def test_a_client_that_vanishes_mid_response_leaves_it_cancelled(server, upstream, client):
    hold = threading.Event()
    upstream.script(Reply(text="a long answer that never ends", hold=hold))
    try:
        with open_socket(server.url) as ws:
            ws.create(model="gpt-test", input="go")
            created = ws.recv()
            assert created["type"] == "response.created"
            ws.until(lambda e: e["type"] == "response.output_text.delta")
        # The socket is closed; the run is stopped and stored as cancelled.
        response_id = created["response"]["id"]

        def stored():
            try:
                return client.responses.retrieve(response_id)
            except openai.NotFoundError:
                return None

        response = wait_until(stored)
    finally:
        hold.set()
    assert response.status == "cancelled"
    assert response.output_text == "a lo"
    wait_until(lambda: upstream.disconnects == 1)


def test_the_openai_sdk_websocket_connection(server, upstream, client):
    """The official SDK's `responses.connect()`: a warm-up, then a continuation on a lane."""
    upstream.script(Reply(text="Noted, 42."))

    def until_done(connection) -> list:
        events = []
        for event in connection:
            events.append(event)
            if event.type in TERMINAL or event.type == "error":
                return events
        raise AssertionError("the socket closed")

    with client.responses.connect() as connection:
        connection.response.create(model="gpt-test", input="The code is 42.", store=False, generate=False)
        warm = until_done(connection)[-1].response
        connection.response.create(
            model="gpt-test", input="And?", store=False, previous_response_id=warm.id, stream_id="agent_1"
        )
        events = until_done(connection)
        connection.response.create(model="gpt-test", input="x", store=False, previous_response_id="resp_gone")
        error = until_done(connection)[-1]
    assert events[-1].type == "response.completed" and events[-1].response.output_text == "Noted, 42."
    assert {event.stream_id for event in events} == {"agent_1"}
    assert error.type == "error" and error.error.code == "previous_response_not_found"
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == ["The code is 42.", "And?"]


async def test_the_benchmark_loops_chain_their_turns(server, upstream):
    """benchmarks/ws_loop.py drives what it claims to: chained turns, each one new item."""
    from benchmarks.ws_loop import http_loop, ws_loop

    assert len(await ws_loop(server.url, "gpt-test", 3)) == 3
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == [
        "Result of tool call 0: ok.",
        "echo: Result of tool call 0: ok.",
        "Result of tool call 1: ok.",
        "echo: Result of tool call 1: ok.",
        "Result of tool call 2: ok.",
    ]
    assert len(await http_loop(server.url, "gpt-test", 3)) == 3
    assert len(upstream.requests[-1]["messages"]) == 5
