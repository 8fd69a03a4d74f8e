"""Two 200-turn chains on the embedded model with its default window (n_ctx 4096), through
the openai SDK: one with ``truncation: "auto"``, one with ``context_management``.

Each turn is a note of ~55 tokens of varied text, so a chain is about three windows long.
Answers are a small JSON object (a structured output: the grammar ends each answer in a
few tokens, so every turn completes and the test stays short). The server has one slot
(``parallel = 1``) with llama.cpp's cache reuse on (``cache_reuse``): a truncation cut
shifts the kept part of the prompt in the model's cache instead of reading it again, and
a compaction's summary call is read from the cache the chain left there.

Slow tier (10-12 minutes on two busy cores): deselected by default (pyproject's addopts), run
by scripts/test.sh as its own pytest invocation, or by hand with ``pytest -m slow``.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import parse_config
from tests.support.servers import ServerThread

pytest.importorskip("xllamacpp", reason="xllamacpp is not installed (scripts/install.sh installs it)")

from continuo.backends import local

if local.default_model_path() is None:
    pytest.skip("the local model is not installed (scripts/install.sh installs it)", allow_module_level=True)

pytestmark = pytest.mark.slow

WINDOW = 4096
TURNS = 200
MAX_OUTPUT = 16
THRESHOLD = 2048
ACK: Any = {
    "format": {
        "type": "json_schema",
        "name": "ack",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"noted": {"type": "boolean"}},
            "required": ["noted"],
            "additionalProperties": False,
        },
    }
}

NAMES = ["Ada", "Bram", "Chiara", "Dmitri", "Elin", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kaia", "Luis"]
VERBS = ["repairs", "collects", "paints", "sells", "photographs", "counts", "borrows", "sketches"]
ADJECTIVES = ["blue", "ancient", "tiny", "noisy", "golden", "crooked", "velvet", "rusty", "striped"]
THINGS = ["kayaks", "violins", "lemon trees", "bicycles", "telescopes", "goats", "paper lanterns", "chess sets"]
PLACES = ["Oslo", "Lisbon", "Kyoto", "Nairobi", "Quito", "Tromsø", "Porto", "Hanoi", "Tallinn", "Perth"]
WHEN = ["Monday", "spring", "night", "winter", "July"]


def note(i: int) -> str:
    """Turn ``i``'s input: three made-up facts and a question, ~55 tokens, different each turn."""
    r = random.Random(i)
    facts = [
        f"{r.choice(NAMES)} {r.choice(VERBS)} {r.randint(2, 99)} {r.choice(ADJECTIVES)} {r.choice(THINGS)} "
        f"in {r.choice(PLACES)} every {r.choice(WHEN)}."
        for _ in range(3)
    ]
    return f"Note {i}: {' '.join(facts)} Did you note that?"


@pytest.fixture(scope="module")
def local4k(tmp_path_factory) -> Iterator[openai.OpenAI]:
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path_factory.mktemp('local-chains') / 'c.db'}"},
            "providers": [{"name": "local", "type": "local", "n_ctx": WINDOW, "parallel": 1, "cache_reuse": 256}],
            "models": [{"name": "*", "provider": "local"}],
        }
    )
    running = ServerThread(create_app(config)).start()
    with openai.OpenAI(base_url=f"{running.url}/v1", api_key="none", max_retries=0, timeout=300) as client:
        yield client
    running.stop()


def _turn(client: openai.OpenAI, i: int, previous: str | None, **options: Any) -> Any:
    response = client.responses.create(
        model="local",
        input=note(i),
        previous_response_id=previous,
        max_output_tokens=MAX_OUTPUT,
        temperature=0,
        text=ACK,
        **options,
    )
    assert response.status == "completed", (i, response.error, response.incomplete_details)
    assert response.output[-1].type == "message"
    assert json.loads(response.output_text) in ({"noted": True}, {"noted": False}), (i, response.output_text)
    return response


def test_the_chains_are_several_windows_long(local4k):
    parts: list[Any] = [[{"role": "user", "content": note(i)} for i in range(k, k + 50)] for k in range(0, TURNS, 50)]
    notes = sum(local4k.responses.input_tokens.count(model="local", input=part).input_tokens for part in parts)
    assert notes > 2.5 * WINDOW  # the notes alone, without the answers and their framing


def test_200_turns_with_truncation_auto_answer_within_the_window(local4k):
    started = time.monotonic()
    previous: str | None = None
    inputs: list[int] = []
    cuts = 0
    for i in range(TURNS):
        counted = None
        if i % 10 == 9:  # what the turn will send, counted first: the same number
            counted = local4k.responses.input_tokens.count(
                model="local",
                input=note(i),
                previous_response_id=previous,
                truncation="auto",
                text=ACK,
                extra_body={"max_output_tokens": MAX_OUTPUT},
            ).input_tokens
        response = _turn(local4k, i, previous, truncation="auto")
        sent = response.usage.input_tokens
        assert counted is None or counted == sent, i
        assert sent + MAX_OUTPUT <= WINDOW, (i, sent)
        if inputs and sent < inputs[-1]:
            cuts += 1
            # The cut kept the prompt cache: the kept items were shifted, not read again.
            assert response.usage.input_tokens_details.cached_tokens > sent // 2, (i, response.usage)
        inputs.append(sent)
        previous = response.id
    seconds = time.monotonic() - started
    print(f"\n{TURNS} turns with truncation auto at n_ctx {WINDOW}: {seconds:.1f} s, {cuts} cuts")
    assert cuts >= 5  # the window was crossed again and again
    # A plateau: the second half stays in the band that truncation keeps, and grows no more.
    late = inputs[TURNS // 2 :]
    assert WINDOW // 2 <= min(late) and max(late) <= WINDOW - MAX_OUTPUT
    assert abs(statistics.mean(late[-50:]) - statistics.mean(late[:50])) < WINDOW / 10
    # The chain itself is far past the window: without truncation it is refused.
    with pytest.raises(openai.BadRequestError) as exc:
        local4k.responses.create(model="local", input="Again.", previous_response_id=previous, max_output_tokens=4)
    assert exc.value.response.json()["error"]["code"] == "context_length_exceeded"


def test_200_turns_with_context_management_compact_past_the_threshold(local4k):
    started = time.monotonic()
    management: Any = [{"type": "compaction", "compact_threshold": THRESHOLD}]
    previous: str | None = None
    compactions = 0
    for i in range(TURNS):
        # What the turn would send as it stands (compaction items opened, none made).
        would_send = local4k.responses.input_tokens.count(
            model="local", input=note(i), previous_response_id=previous, text=ACK
        ).input_tokens
        response = _turn(local4k, i, previous, context_management=management)
        kinds = [item.type for item in response.output]
        sent = response.usage.input_tokens
        if would_send > THRESHOLD:
            compactions += 1
            assert kinds == ["compaction", "message"], (i, kinds)
            assert response.output[0].encrypted_content
            assert sent < THRESHOLD // 2, (i, sent)  # the summary and the latest note, not the rest
        else:
            assert kinds == ["message"], (i, kinds)
            assert sent == would_send, i
        previous = response.id
    seconds = time.monotonic() - started
    print(f"\n{TURNS} turns with context_management (threshold {THRESHOLD}) at n_ctx {WINDOW}: {seconds:.1f} s")
    print(f"{compactions} compactions")
    assert compactions >= 5
    # Compacting the chain now: the summary call reads the context from the model's cache.
    compacted = local4k.responses.compact(model="local", previous_response_id=previous)
    assert compacted.output[-1].type == "compaction" and compacted.usage.output_tokens > 0
    details = compacted.usage.input_tokens_details
    assert details.cached_tokens > compacted.usage.input_tokens // 2, compacted.usage
