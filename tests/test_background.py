"""Background runs through the openai SDK: poll, stream, resume, cancel, limits, disconnects."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from continuo.api.app import create_app
from tests.support.configs import make_config
from tests.support.fake_chat import Reply
from tests.support.servers import ServerThread
from tests.support.waits import wait_until

SLOW = {"text": "one two three four five six seven eight", "chunk_size": 4, "delay": 0.05}


@pytest.fixture(scope="module")
def bg_server(upstream, tmp_path_factory) -> Iterator[ServerThread]:
    config = make_config(
        upstream.url,
        tmp_path_factory.mktemp("bg") / "bg.db",
        background={"max_concurrent": 1, "poll_seconds": 0.2},
    )
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture
def bg(bg_server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{bg_server.url}/v1", api_key="k", max_retries=0) as client:
        yield client


def test_background_returns_at_once_then_completes(bg, upstream):
    upstream.script(Reply(**SLOW))
    response = bg.responses.create(model="gpt-test", input="go", background=True)
    assert response.status in ("queued", "in_progress")
    assert response.background is True
    final = wait_until(lambda: (r := bg.responses.retrieve(response.id)).status == "completed" and r)
    assert final.output_text == SLOW["text"]
    assert final.created_at == response.created_at and final.completed_at >= final.created_at
    assert [item.status for item in final.output] == ["completed"]
    assert upstream.last["stream"] is True


def test_retrieve_while_running_shows_finished_items(bg, upstream):
    upstream.script(Reply(reasoning="think " * 3, text="answer " * 20, chunk_size=3, delay=0.03))
    response = bg.responses.create(model="gpt-test", input="go", background=True)

    def reasoning_done():
        current = bg.responses.retrieve(response.id)
        return current.status == "in_progress" and len(current.output) == 1 and current

    partial = wait_until(reasoning_done)
    assert partial.output[0].type == "reasoning" and partial.output[0].status == "completed"
    wait_until(lambda: bg.responses.retrieve(response.id).status == "completed")


def test_background_requires_store(bg):
    with pytest.raises(openai.BadRequestError) as error:
        bg.responses.create(model="gpt-test", input="go", background=True, store=False)
    assert error.value.body["param"] == "store"


def sse_events(client: openai.OpenAI, stream: Any) -> list[dict]:
    return [event.to_dict() for event in stream]


def test_stream_background_and_resume(bg, upstream):
    upstream.script(Reply(**SLOW))
    stream = bg.responses.create(model="gpt-test", input="go", background=True, stream=True)
    first_part = []
    for event in stream:
        first_part.append(event.to_dict())
        if len(first_part) == 6:
            break
    stream.close()
    types = [e["type"] for e in first_part]
    assert types[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert first_part[0]["response"]["status"] == "queued"
    response_id = first_part[0]["response"]["id"]
    resumed = sse_events(bg, bg.responses.retrieve(response_id, stream=True, starting_after=5))
    whole = sse_events(bg, bg.responses.retrieve(response_id, stream=True))
    assert first_part + resumed == whole
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    assert whole[-1]["type"] == "response.completed"
    assert whole[-1]["response"] == bg.responses.retrieve(response_id).to_dict()


def test_sdk_stream_helper_on_background(bg, upstream):
    upstream.script(Reply(text="helper works"))
    with bg.responses.stream(model="gpt-test", input="go", background=True) as stream:
        final = stream.get_final_response()
    assert final.output_text == "helper works"


def test_stream_of_foreground_is_400(bg):
    response = bg.responses.create(model="gpt-test", input="fg")
    with pytest.raises(openai.BadRequestError):
        list(bg.responses.retrieve(response.id, stream=True))


def test_cancel_running(bg, upstream):
    upstream.script(Reply(text="x" * 400, chunk_size=2, delay=0.05))
    response = bg.responses.create(model="gpt-test", input="go", background=True)
    with bg.responses.retrieve(response.id, stream=True) as live:
        next(e for e in live if e.type == "response.output_text.delta")  # some text went through
    cancelled = bg.responses.cancel(response.id)
    assert cancelled.status == "cancelled"
    assert cancelled.output[0].content[0].text.startswith("xx")
    wait_until(lambda: upstream.disconnects == 1)
    events = sse_events(bg, bg.responses.retrieve(response.id, stream=True))
    assert events[-1]["type"] == "response.cancelled"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert bg.responses.retrieve(response.id).status == "cancelled"


def test_cancel_ends_a_live_stream(bg, upstream):
    upstream.script(Reply(text="y" * 400, chunk_size=2, delay=0.05))
    stream = bg.responses.create(model="gpt-test", input="go", background=True, stream=True)
    events = []
    for event in stream:
        events.append(event)
        if event.type == "response.output_text.delta" and len(events) == 6:
            bg.responses.cancel(events[0].response.id)
    assert events[-1].type == "response.cancelled"
    # Not a type the SDK knows, so it stays a plain mapping.
    assert events[-1].to_dict()["response"]["status"] == "cancelled"


def test_cancel_queued_and_queue_order(bg, upstream):
    upstream.script(Reply(text="z" * 60, chunk_size=2, delay=0.05))
    first = bg.responses.create(model="gpt-test", input="1", background=True)
    second = bg.responses.create(model="gpt-test", input="2", background=True)
    third = bg.responses.create(model="gpt-test", input="3", background=True)
    wait_until(lambda: bg.responses.retrieve(first.id).status == "in_progress")
    assert bg.responses.retrieve(second.id).status == "queued"  # max_concurrent = 1
    cancelled = bg.responses.cancel(second.id)
    assert cancelled.status == "cancelled" and cancelled.output == []
    done = wait_until(lambda: (r := bg.responses.retrieve(third.id)).status == "completed" and r)
    assert done.output_text == "echo: 3"
    assert [m["content"] for m in upstream.requests[-1]["messages"]] == ["3"]
    assert len(upstream.requests) == 2


def test_cancel_finished_foreground_and_unknown(bg, upstream):
    upstream.script(Reply(text="done"))
    response = bg.responses.create(model="gpt-test", input="go", background=True)
    finished = wait_until(lambda: (r := bg.responses.retrieve(response.id)).status == "completed" and r)
    assert bg.responses.cancel(response.id) == finished
    foreground = bg.responses.create(model="gpt-test", input="fg")
    with pytest.raises(openai.BadRequestError) as error:
        bg.responses.cancel(foreground.id)
    assert "background" in error.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        bg.responses.cancel("resp_missing")


def test_background_upstream_failure_is_stored_failed(bg, upstream):
    upstream.script(Reply(status=500, body=b'{"error": {"message": "boom"}}'))
    response = bg.responses.create(model="gpt-test", input="go", background=True)
    failed = wait_until(lambda: (r := bg.responses.retrieve(response.id)).status == "failed" and r)
    assert "boom" in failed.error.message
    events = sse_events(bg, bg.responses.retrieve(response.id, stream=True))
    assert events[-1]["type"] == "response.failed"


def test_background_chain(bg, upstream):
    first = bg.responses.create(model="gpt-test", input="first")
    second = bg.responses.create(model="gpt-test", input="second", previous_response_id=first.id, background=True)
    wait_until(lambda: bg.responses.retrieve(second.id).status == "completed")
    assert [m["content"] for m in upstream.last["messages"]] == ["first", "echo: first", "second"]
    items = bg.responses.input_items.list(second.id, order="asc")
    assert [i.content[0].text for i in items.data] == ["first", "echo: first", "second"]


def test_foreground_disconnect_stops_upstream_and_stores_cancelled(bg_server, bg, upstream):
    upstream.script(Reply(text="w" * 400, chunk_size=2, delay=0.05))
    body = {"model": "gpt-test", "input": "go", "stream": True}
    response_id = None
    with httpx.stream("POST", f"{bg_server.url}/v1/responses", json=body) as answer:
        for line in answer.iter_lines():
            if line.startswith("data:"):
                event = orjson.loads(line[5:])
                if event["type"] == "response.created":
                    response_id = event["response"]["id"]
                elif event["type"] == "response.output_text.delta":
                    break  # and hang up
    assert response_id
    wait_until(lambda: upstream.disconnects == 1)
    stored = wait_until(lambda: _retrieve_or_none(bg, response_id))
    assert stored.status == "cancelled"
    assert stored.output and stored.output[0].status == "incomplete"


def _retrieve_or_none(client: openai.OpenAI, response_id: str) -> Any:
    try:
        return client.responses.retrieve(response_id)
    except openai.NotFoundError:
        return None
