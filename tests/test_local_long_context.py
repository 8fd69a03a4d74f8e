"""Long contexts on the embedded model: exact counts from its own tokenizer, compaction
written by the model itself, and long chains that keep answering past its window."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import parse_config
from tests.support.servers import ServerThread

pytest.importorskip("xllamacpp", reason="xllamacpp is not installed (scripts/install.sh installs it)")

import itertools

from continuo.backends import local

if local.default_model_path() is None:
    pytest.skip("the local model is not installed (scripts/install.sh installs it)", allow_module_level=True)

# Long chains on the embedded model use small windows and 30 turns: the mechanics are
# those of a 4096-token window (exact counts from llama.cpp's tokenizer, truncation at
# fixed points, compaction written by the model), while on two busy cores SmolLM2 reads
# prompts at a few dozen tokens a second and every cut or compaction makes it read its
# window again (200 turns at n_ctx 512 took over 8 minutes here). The 200-turn chains run
# on the fake upstream (tests/test_long_context.py), through the same code, and on this
# model at n_ctx 4096 in the slow tier (tests/test_local_long_chains.py).
TURNS = 30
TRUNCATION_CTX = 256
COMPACTION_CTX = 512


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Iterator[openai.OpenAI]:
    """The embedded model twice: ``tiny`` (n_ctx 256), and any other name (n_ctx 512)."""
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path_factory.mktemp('local-lc') / 'c.db'}"},
            "providers": [
                {"name": "tiny", "type": "local", "n_ctx": TRUNCATION_CTX},
                {"name": "local", "type": "local", "n_ctx": COMPACTION_CTX},
            ],
            "models": [{"name": "tiny", "provider": "tiny"}, {"name": "*", "provider": "local"}],
        }
    )
    running = ServerThread(create_app(config)).start()
    with openai.OpenAI(base_url=f"{running.url}/v1", api_key="none", max_retries=0, timeout=300) as client:
        yield client
    running.stop()


TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    }
]


def test_counts_equal_the_models_own_prompt_tokens(small):
    body = {
        "model": "local",
        "instructions": "You are a weather bot.",
        "input": [
            {"role": "user", "content": "Hello! What is the weather in Oslo?"},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "Rain, 8 degrees."},
        ],
        "tools": TOOLS,
    }
    counted = small.responses.input_tokens.count(**body)
    response = small.responses.create(**body, max_output_tokens=2)
    assert counted.input_tokens == response.usage.input_tokens
    chained = small.responses.input_tokens.count(model="local", input="And Paris?", previous_response_id=response.id)
    second = small.responses.create(
        model="local", input="And Paris?", previous_response_id=response.id, max_output_tokens=2
    )
    alone = small.responses.input_tokens.count(model="local", input="And Paris?")
    assert chained.input_tokens == second.usage.input_tokens > alone.input_tokens


def test_what_the_model_cannot_take_is_a_400_when_counting_too(small):
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    with pytest.raises(openai.BadRequestError):
        small.responses.input_tokens.count(model="local", input=[{"role": "user", "content": [image]}])


def test_over_the_window_is_a_400_before_the_model_runs(small):
    with pytest.raises(openai.BadRequestError) as exc:
        small.responses.create(model="local", input="word " * 600, max_output_tokens=2)
    assert exc.value.response.json()["error"]["code"] == "context_length_exceeded"


def test_compact_is_written_by_the_model_and_reused(small):
    compacted = small.responses.compact(
        model="local",
        input=[
            {"role": "user", "content": "My name is Zorblax and I live in Oslo."},
            {"role": "assistant", "content": "Nice to meet you, Zorblax."},
            {"role": "user", "content": "What is my name?"},
        ],
    )
    assert compacted.output[-1].type == "compaction"
    assert compacted.usage.output_tokens > 0  # the model wrote a summary
    item = compacted.output[-1].model_dump(exclude_none=True)
    response = small.responses.create(model="local", input=[item], max_output_tokens=8)
    assert response.status in ("completed", "incomplete")


def _chain(client: openai.OpenAI, model: str, window: int, **options: object) -> tuple[list[Any], float]:
    started = time.monotonic()
    previous = None
    responses = []
    for i in range(TURNS):
        response = client.responses.create(
            model=model,
            input=f"Say {i}.",
            previous_response_id=previous,
            max_output_tokens=3,
            temperature=0,
            **options,  # type: ignore[arg-type]
        )
        assert response.status in ("completed", "incomplete"), (i, response.error)
        assert response.usage.input_tokens + 3 <= window
        responses.append(response)
        previous = response.id
    return responses, time.monotonic() - started


def test_a_long_chain_keeps_answering_with_truncation_auto(small):
    responses, seconds = _chain(small, "tiny", TRUNCATION_CTX, truncation="auto")
    print(f"\n{TURNS} turns with truncation auto at n_ctx {TRUNCATION_CTX}: {seconds:.1f} s")
    inputs = [r.usage.input_tokens for r in responses]
    cuts = sum(1 for a, b in itertools.pairwise(inputs) if b < a)
    assert cuts >= 3  # the window was crossed again and again
    # The whole chain is far past the window: without truncation it is refused.
    with pytest.raises(openai.BadRequestError) as exc:
        small.responses.create(model="tiny", input="Again.", previous_response_id=responses[-1].id, max_output_tokens=3)
    assert exc.value.response.json()["error"]["code"] == "context_length_exceeded"
    assert all(r.output_text for r in responses[-5:])


def test_a_long_chain_keeps_answering_with_context_management(small):
    responses, seconds = _chain(
        small, "local", COMPACTION_CTX, context_management=[{"type": "compaction", "compact_threshold": 250}]
    )
    print(f"\n{TURNS} turns with context_management at n_ctx {COMPACTION_CTX}: {seconds:.1f} s")
    compacted = [r for r in responses if r.output and r.output[0].type == "compaction"]
    assert len(compacted) >= 2
    assert all(r.output_text for r in responses[-5:])
    assert max(r.usage.input_tokens for r in responses) <= 250 + 40
