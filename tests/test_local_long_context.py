"""Long contexts on the embedded model: exact counts from its own tokenizer, compaction
written by the model itself, and long chains that keep answering past its window."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import parse_config
from tests.support.servers import ServerThread

pytest.importorskip("xllamacpp", reason="xllamacpp is not installed (scripts/install.sh installs it)")

from continuo.backends import local  # noqa: E402

if local.default_model_path() is None:
    pytest.skip("the local model is not installed (scripts/install.sh installs it)", allow_module_level=True)

# A small window has exactly the mechanics of a large one (count, compact, truncate at
# fixed points) at a fraction of the prompt processing: on two busy cores SmolLM2 reads
# prompts at a few dozen tokens a second, and every truncation or compaction makes it
# read the window again. See the report in docs/behaviour.md, "Long contexts".
N_CTX = 512
TURNS = 200


def _server(tmp_path_factory: pytest.TempPathFactory, n_ctx: int) -> ServerThread:
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path_factory.mktemp('local-lc') / 'c.db'}"},
            "providers": [{"name": "local", "type": "local", "n_ctx": n_ctx}],
            "models": [{"name": "*", "provider": "local"}],
        }
    )
    return ServerThread(create_app(config)).start()


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Iterator[openai.OpenAI]:
    running = _server(tmp_path_factory, N_CTX)
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
    second = small.responses.create(model="local", input="And Paris?", previous_response_id=response.id, max_output_tokens=2)
    alone = small.responses.input_tokens.count(model="local", input="And Paris?")
    assert chained.input_tokens == second.usage.input_tokens > alone.input_tokens


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


def _chain(client: openai.OpenAI, **options: object) -> tuple[list[object], float]:
    started = time.monotonic()
    previous = None
    responses = []
    for i in range(TURNS):
        response = client.responses.create(
            model="local",
            input=f"Say {i}.",
            previous_response_id=previous,
            max_output_tokens=3,
            temperature=0,
            **options,  # type: ignore[arg-type]
        )
        assert response.status in ("completed", "incomplete"), (i, response.error)
        assert response.usage.input_tokens <= N_CTX
        responses.append(response)
        previous = response.id
    return responses, time.monotonic() - started


def test_a_200_turn_chain_keeps_answering_with_truncation_auto(small):
    responses, seconds = _chain(small, truncation="auto")
    last = responses[-1]
    print(f"\n{TURNS} turns with truncation auto: {seconds:.1f} s")
    # The whole chain is far past the window: without truncation it is refused.
    with pytest.raises(openai.BadRequestError) as exc:
        small.responses.create(model="local", input="Again.", previous_response_id=last.id, max_output_tokens=3)
    assert exc.value.response.json()["error"]["code"] == "context_length_exceeded"
    assert all(r.output_text for r in responses[-10:])


def test_a_200_turn_chain_keeps_answering_with_context_management(small):
    responses, seconds = _chain(small, context_management=[{"type": "compaction", "compact_threshold": 384}])
    print(f"\n{TURNS} turns with context_management: {seconds:.1f} s")
    compacted = [r for r in responses if r.output and r.output[0].type == "compaction"]
    assert len(compacted) >= 3
    assert all(r.output_text for r in responses[-10:])
