"""A request leaves no reference cycle behind in the server: what it built is freed by
reference counting when it ends, not left for the cyclic collector (whose passes cost
the whole process CPU in proportion to what is alive, on every path)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator

import openai
import pytest

SERVER_MODULES = ("uvicorn", "starlette", "continuo", "asyncio")


@pytest.fixture
def saved_garbage() -> Iterator[list[object]]:
    """What the cyclic collector finds from here on, kept for inspection."""
    gc.collect()
    gc.garbage.clear()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def server_cycles(garbage: list[object]) -> Counter[str]:
    gc.collect()
    return Counter(
        f"{type(o).__module__}.{type(o).__qualname__}"
        for o in garbage
        if type(o).__module__.split(".")[0] in SERVER_MODULES
    )


def test_requests_leave_no_cycles(client: openai.OpenAI, saved_garbage: list[object]) -> None:
    for _ in range(5):
        stored = client.responses.create(model="gpt-test", input="hello")
        client.responses.create(model="gpt-test", input="again", previous_response_id=stored.id)
        client.responses.create(model="gpt-test", input="hello", store=False)
        with client.responses.create(model="gpt-test", input="hello", stream=True) as stream:
            assert [e.type for e in stream][-1] == "response.completed"
        client.responses.retrieve(stored.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve("resp_missing")
        conversation = client.conversations.create()
        client.responses.create(model="gpt-test", input="in a conversation", conversation=conversation.id)
        run = client.responses.create(model="gpt-test", input="later", background=True)
        with client.responses.retrieve(run.id, stream=True) as followed:
            assert [e.type for e in followed][-1] == "response.completed"
    assert server_cycles(saved_garbage) == Counter()
