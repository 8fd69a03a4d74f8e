"""Server-Sent Events: the SDK's stream helper, framing, ids, terminal events, failures."""

from __future__ import annotations

import pytest

from continuo.api.app import create_app
from tests.support.configs import make_config
from tests.support.fake_chat import Reply
from tests.support.servers import ServerThread
from tests.support.sse import parse, raw_sse

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def without_parsed(value):
    """The stream helper's ParsedResponse adds ``parsed`` fields a plain Response has not."""
    if isinstance(value, dict):
        return {k: without_parsed(v) for k, v in value.items() if k != "parsed"}
    if isinstance(value, list):
        return [without_parsed(v) for v in value]
    return value


def test_framing_under_another_http_protocol(upstream, tmp_path):
    # Served by a protocol that has no chunk writer of Continuo's (uvicorn's h11), events
    # go as one body message each: still one HTTP chunk an event.
    server = ServerThread(create_app(make_config(upstream.url, tmp_path / "h11.db")), http="h11").start()
    try:
        upstream.script(Reply(text="Hello there, world", chunk_size=3))
        _, chunks = raw_sse(server.port, {"model": "gpt-test", "input": "hi", "stream": True})
    finally:
        server.stop()
    events = parse(chunks)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hello there, world"
    assert events[-1]["type"] == "response.completed"


def test_stream_framing_and_sequence(server, upstream):
    upstream.script(Reply(text="Hello there, world", chunk_size=3))
    head, chunks = raw_sse(server.port, {"model": "gpt-test", "input": "hi", "stream": True})
    assert "text/event-stream" in head.lower()
    events = parse(chunks)
    types = [e["type"] for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert deltas == "Hello there, world"
    assert events[0]["response"]["status"] == "in_progress"
    assert len({e["response"]["id"] for e in events if "response" in e}) == 1


def test_sdk_stream_helper_matches_retrieve(client, upstream):
    upstream.script(Reply(text="streamed answer", reasoning="a thought"))
    with client.responses.stream(model="gpt-test", input="hi") as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert "response.reasoning_text.delta" in seen and "response.reasoning_text.done" in seen
    assert final.output_text == "streamed answer"
    stored = client.responses.retrieve(final.id)
    assert stored.to_dict() == without_parsed(final.to_dict())
    assert [item.id for item in stored.output] == [item.id for item in final.output]


def test_stream_tool_calls(client, upstream):
    upstream.script(Reply(tool_calls=[("get_weather", '{"city": "Oslo"}'), ("get_weather", '{"city": "Lima"}')]))
    with client.responses.stream(model="gpt-test", input="weather", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [e.arguments for e in done] == ['{"city": "Oslo"}', '{"city": "Lima"}']
    calls = [i for i in final.output if i.type == "function_call"]
    assert [c.arguments for c in calls] == ['{"city": "Oslo"}', '{"city": "Lima"}']
    assert {e.item_id for e in done} == {c.id for c in calls}
    stored = client.responses.retrieve(final.id).to_dict()["output"]
    assert stored == [{k: v for k, v in c.to_dict().items() if k != "parsed_arguments"} for c in final.output]


def test_stream_incomplete_is_terminal(client, upstream):
    upstream.script(Reply(text="trunc", finish_reason="length"))
    events = list(client.responses.create(model="gpt-test", input="x", stream=True, max_output_tokens=16))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    assert client.responses.retrieve(events[-1].response.id).status == "incomplete"


@pytest.mark.parametrize("failure", [{"break_after": 3}, {"error_after": 3}])
def test_upstream_failure_mid_stream(client, upstream, failure):
    upstream.script(Reply(text="this will not finish", chunk_size=2, **failure))
    events = list(client.responses.create(model="gpt-test", input="x", stream=True))
    last = events[-1]
    assert last.type == "response.failed"
    assert last.response.status == "failed"
    assert last.response.error.code == "server_error"
    assert "fake" in last.response.error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))
    stored = client.responses.retrieve(last.response.id)
    assert stored.status == "failed"
    assert stored.output[0].status == "incomplete"


async def test_async_stream(aclient, upstream):
    upstream.script(Reply(text="async stream"))
    async with aclient.responses.stream(model="gpt-test", input="hi") as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_response()
    assert final.output_text == "async stream"
    assert (await aclient.responses.retrieve(final.id)).output_text == "async stream"


def test_stream_store_false(client, upstream):
    events = list(client.responses.create(model="gpt-test", input="x", stream=True, store=False))
    assert events[-1].type == "response.completed"
    assert events[-1].response.store is False


@pytest.mark.wire_exempt("stored")  # the point: storing it fails
def test_a_store_failure_ends_the_stream_as_failed(server, client, upstream, monkeypatch):
    store = server.app.state.service.store

    async def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store, "save_response", broken)
    upstream.script(Reply(text="not kept"))
    events = list(client.responses.create(model="gpt-test", input="x", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.message == "The response could not be stored."
    assert [e.sequence_number for e in events] == list(range(len(events)))
