"""The embedded model behind the server, through the openai SDK: what a fresh install
serves with no config, no key and no upstream. Real model, short prompts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import load_config
from tests.support.local_model import ADD, TOOLS, WEATHER, check
from tests.support.requires import require, unavailable
from tests.support.servers import ServerThread

require("xllamacpp", "xllamacpp is not installed (scripts/install.sh installs it)")

from continuo.backends import local  # noqa: E402 -- after the check that xllamacpp is there

if local.default_model_path() is None:
    unavailable("the local model is not installed (scripts/install.sh installs it)")


@pytest.fixture(scope="module")
def local_server(tmp_path_factory) -> Iterator[ServerThread]:
    """Exactly the defaults of `continuo serve` with no config file."""
    config = load_config(None)
    assert [p.type for p in config.providers] == ["local"]
    assert config.database.url == "sqlite:///continuo.db"
    config.database.url = f"sqlite:///{tmp_path_factory.mktemp('local') / 'continuo.db'}"
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture
def llm(local_server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{local_server.url}/v1", api_key="none", max_retries=0, timeout=120) as client:
        yield client


@pytest.fixture
def payloads(monkeypatch) -> list[dict[str, Any]]:
    """What the local backend hands to llama.cpp, recorded on the way."""
    seen: list[dict[str, Any]] = []
    build = local.build_payload

    def record(request: Any) -> Any:
        result = build(request)
        seen.append(result[0])
        return result

    monkeypatch.setattr(local, "build_payload", record)
    return seen


def test_models_lists_local(llm):
    assert [m.id for m in llm.models.list()] == ["local"]


def test_plain_answer(llm):
    response = llm.responses.create(model="local", input="Say hello.", max_output_tokens=16)
    assert response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert llm.responses.retrieve(response.id).output_text == response.output_text


def test_streamed_answer_passes_the_sdk_helper(llm):
    with llm.responses.stream(model="local", input="Say hi.", temperature=0, max_output_tokens=64) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text
    assert len(deltas) > 1
    assert llm.responses.retrieve(final.id).output_text == final.output_text


def test_chain_sends_the_first_turn(llm, payloads):
    first = llm.responses.create(model="local", input="My name is Zorblax.", max_output_tokens=12)
    second = llm.responses.create(
        model="local", input="What is my name?", previous_response_id=first.id, max_output_tokens=12
    )
    assert second.previous_response_id == first.id
    messages = payloads[-1]["messages"]
    contents = [m["content"] for m in messages]
    assert "My name is Zorblax." in contents
    assert first.output_text in contents
    assert contents[-1] == "What is my name?"
    assert contents.index("My name is Zorblax.") < contents.index(first.output_text)


def test_json_schema_answer_validates(llm):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
        "additionalProperties": False,
    }
    response = llm.responses.create(
        model="local",
        input="Describe the weather in Paris as JSON.",
        text={"format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}},
        max_output_tokens=48,
    )
    check(json.loads(response.output_text), schema)


def test_tool_call_names_an_offered_function(llm):
    response = llm.responses.create(
        model="local",
        input="What is the weather in Oslo?",
        tools=TOOLS,
        tool_choice="required",
        max_output_tokens=64,
    )
    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name in {"get_weather", "add"}
    check(json.loads(call.arguments), WEATHER if call.name == "get_weather" else ADD)
    assert call.call_id.startswith("call_")
