"""Long contexts behind a Chat Completions upstream: input token counts (exact through a
tokenize route, estimated without one), compaction (the endpoint, items in input,
``context_management``) and ``truncation``, through the openai SDK."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from continuo.api.app import create_app
from continuo.config import parse_config
from continuo.core.compaction import INSTRUCTIONS, REQUEST, SUMMARY_HEADER
from tests.support.fake_chat import FakeChatUpstream, Reply, fake_token_count
from tests.support.servers import ServerThread

KEY_ENV = "CONTINUO_TEST_COMPACTION_KEY"


def _fake() -> tuple[FakeChatUpstream, ServerThread]:
    fake = FakeChatUpstream()
    server = ServerThread(fake.app).start()
    return fake, server


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeChatUpstream, FakeChatUpstream, str, str]]:
    exact, exact_server = _fake()
    estimated, estimated_server = _fake()
    estimated.tokenize_route = False
    yield exact, estimated, exact_server.url, estimated_server.url
    exact_server.stop()
    estimated_server.stop()


def _config(exact_url: str, estimated_url: str, db: Any, **security: Any) -> Any:
    def provider(name: str, url: str) -> dict[str, Any]:
        return {"name": name, "type": "chat_completions", "base_url": f"{url}/v1", "max_retries": 0, "timeout": 5}

    return parse_config(
        {
            "database": {"url": f"sqlite:///{db}"},
            "security": security,
            "providers": [provider("exact", exact_url), provider("estimated", estimated_url)],
            "models": [
                {"name": "gpt-small", "provider": "exact", "context_window": 120},
                {"name": "gpt-mid", "provider": "exact", "context_window": 300},
                {"name": "gpt-tiny", "provider": "exact", "context_window": 60},
                {"name": "gpt-est", "provider": "estimated"},
                {"name": "gpt-est-small", "provider": "estimated", "context_window": 300},
                {"name": "*", "provider": "exact"},
            ],
        }
    )


@pytest.fixture(scope="module")
def lc_server(fakes, tmp_path_factory) -> Iterator[ServerThread]:
    _exact, _estimated, exact_url, estimated_url = fakes
    running = ServerThread(
        create_app(_config(exact_url, estimated_url, tmp_path_factory.mktemp("lc") / "c.db"))
    ).start()
    yield running
    running.stop()


@pytest.fixture
def up(fakes) -> FakeChatUpstream:
    fakes[0].reset()
    fakes[1].reset()
    return fakes[0]


@pytest.fixture
def lc(lc_server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{lc_server.url}/v1", api_key="k", max_retries=0) as c:
        yield c


def _error(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


# -- counting ---------------------------------------------------------------------------------


def test_input_tokens_are_the_upstreams_own_count_of_what_it_receives(lc, up):
    body: dict[str, Any] = {
        "model": "gpt-4.1",
        "instructions": "Answer in French.",
        "input": [{"role": "user", "content": "What is the weather in Paris today?"}],
        "tools": [WEATHER],
    }
    counted = lc.responses.input_tokens.count(**body)
    assert counted.object == "response.input_tokens"
    assert up.tokenize_requests and "messages" in up.tokenize_requests[-1]
    lc.responses.create(**body)
    sent = up.last
    assert counted.input_tokens == fake_token_count(sent["messages"], sent["tools"])


def test_input_tokens_count_the_whole_chain(lc, up):
    first = lc.responses.create(model="gpt-4.1", input="My name is Ada and I like long walks by the sea.")
    alone = lc.responses.input_tokens.count(model="gpt-4.1", input="What is my name?")
    chained = lc.responses.input_tokens.count(model="gpt-4.1", input="What is my name?", previous_response_id=first.id)
    lc.responses.create(model="gpt-4.1", input="What is my name?", previous_response_id=first.id)
    assert chained.input_tokens == fake_token_count(up.last["messages"])
    assert chained.input_tokens > alone.input_tokens


def test_input_tokens_without_a_model_use_the_catch_all_route(lc, up):
    counted = lc.responses.input_tokens.count(input="hello there")
    assert counted.input_tokens == fake_token_count([{"role": "user", "content": "hello there"}])


def test_without_a_tokenize_route_counts_are_estimates_and_the_route_is_not_asked_again(lc, up, fakes):
    estimated = fakes[1]
    text = "alpha beta gamma delta " * 50
    first = lc.responses.input_tokens.count(model="gpt-est", input=text)
    probes = len(estimated.tokenize_requests)
    second = lc.responses.input_tokens.count(model="gpt-est", input=text + " more")
    assert len(estimated.tokenize_requests) == probes  # remembered: no tokenize route there
    # o200k_base: each of these words is one token, plus a few for the message around it.
    assert 200 <= first.input_tokens <= 215
    assert second.input_tokens == first.input_tokens + 1


def test_input_tokens_errors(lc, up):
    with pytest.raises(openai.BadRequestError) as exc:
        lc.responses.input_tokens.count(model="gpt-4.1", previous_response_id="resp_missing", input="x")
    assert _error(exc.value)["code"] == "previous_response_not_found"
    with pytest.raises(openai.BadRequestError) as exc:
        lc.responses.input_tokens.count(
            model="gpt-4.1", input=[{"type": "compaction", "encrypted_content": "cs1.AAAA"}]
        )
    assert _error(exc.value)["code"] == "invalid_encrypted_content"


# -- the context window ------------------------------------------------------------------------

LONG = "one two three four five six seven eight nine ten " * 3  # 30 words


def _turns(n: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for i in range(n):
        items.append({"role": "user", "content": f"turn {i}: {LONG}"})
        items.append({"role": "assistant", "content": f"answer {i}"})
    return items


def test_over_the_window_without_truncation_is_a_400_before_the_upstream_is_called(lc, up):
    with pytest.raises(openai.BadRequestError) as exc:
        lc.responses.create(model="gpt-small", input=[*_turns(4), {"role": "user", "content": "and now?"}])
    error = _error(exc.value)
    assert error["code"] == "context_length_exceeded" and error["param"] == "input"
    assert error["type"] == "invalid_request_error"
    assert up.requests == []  # counted, refused, never sent


def test_truncation_auto_drops_the_oldest_items_but_never_instructions_or_half_a_call(lc, up):
    items = [
        {"role": "developer", "content": "You are terse."},
        *_turns(2),
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "rain " + LONG},
        {"role": "user", "content": "turn 3: thanks, and Paris?"},
    ]
    response = lc.responses.create(model="gpt-small", input=items, truncation="auto", tools=[WEATHER])
    assert response.status == "completed" and response.truncation == "auto"
    sent = up.last["messages"]
    assert sent[0] == {"role": "system", "content": "You are terse."}
    assert sent[-1]["content"] == "turn 3: thanks, and Paris?"
    assert fake_token_count(sent, up.last["tools"]) <= 120
    assert "turn 0" not in json.dumps(sent)  # the oldest turn went first
    calls = [m for m in sent if m.get("tool_calls")]
    outputs = [m for m in sent if m["role"] == "tool"]
    assert len(calls) == len(outputs)  # a call and its output stay or go together
    # The stored input is what the client sent: truncation only shapes the model's view.
    listed = lc.responses.input_items.list(response.id, order="asc")
    assert len(listed.data) == len(items)


def test_truncation_auto_when_even_the_newest_item_cannot_fit_is_a_400(lc, up):
    with pytest.raises(openai.BadRequestError) as exc:
        lc.responses.create(model="gpt-small", input=LONG * 6, truncation="auto")
    assert _error(exc.value)["code"] == "context_length_exceeded"
    assert up.requests == []


def test_a_200_turn_chain_keeps_answering_with_truncation_auto(lc, up):
    previous = None
    for i in range(200):
        response = lc.responses.create(
            model="gpt-small", input=f"turn {i}: {LONG}", previous_response_id=previous, truncation="auto"
        )
        assert response.status == "completed"
        sent = up.last["messages"]
        assert fake_token_count(sent) <= 120 and sent[-1]["content"] == f"turn {i}: {LONG}"
        previous = response.id
    with pytest.raises(openai.BadRequestError):  # the chain itself is far past the window
        lc.responses.create(model="gpt-small", input="x", previous_response_id=previous)


def test_a_200_turn_chain_keeps_answering_with_context_management(lc, up):
    previous = None
    compactions = 0
    for i in range(200):
        response = lc.responses.create(
            model="gpt-mid",
            input=f"turn {i}: {LONG}",
            previous_response_id=previous,
            context_management=[{"type": "compaction", "compact_threshold": 200}],
        )
        assert response.status == "completed"
        compactions += response.output[0].type == "compaction"
        sent = up.last["messages"]
        assert fake_token_count(sent) <= 200 and sent[-1]["content"] == f"turn {i}: {LONG}"
        previous = response.id
    assert compactions >= 40
    summary_calls = [i for i, r in enumerate(up.requests) if r["messages"][-1]["content"] == REQUEST]
    assert len(summary_calls) == compactions
    for index in summary_calls[1:]:
        # Each summary call read the previous summary: what was compacted is carried forward.
        summary, before = up.requests[index]["messages"], up.requests[index - 1]["messages"]
        assert SUMMARY_HEADER in summary[0]["content"]
        # It is the context the previous answer was given, that answer, then the request
        # for the summary: a prompt cache holds all but the last message.
        assert summary[: len(before)] == before and len(summary) == len(before) + 2
        assert summary[len(before)]["role"] == "assistant"


# -- compaction -------------------------------------------------------------------------------


def _sealed(item: Any) -> bytes:
    token = item.encrypted_content
    assert token.startswith("cs1.")
    body = token[4:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_compact_needs_a_model(lc, lc_server, up):
    with pytest.raises(openai.BadRequestError) as exc:
        lc.responses.compact(model=None, input="hello")
    assert _error(exc.value)["param"] == "model"
    raw = httpx.post(f"{lc_server.url}/v1/responses/compact", json={"input": "hello"})
    assert raw.status_code == 400 and raw.json()["error"]["param"] == "model"
    assert up.requests == []


def test_compact_summarizes_with_the_routed_model_and_seals_the_summary(lc, up):
    up.script(Reply(text="SUMMARY: the user is Ada, planning a trip to Oslo in May."))
    compacted = lc.responses.compact(
        model="gpt-5-codex",
        input=[
            {"role": "developer", "content": "You are a travel agent."},
            {"role": "user", "content": "I am Ada. I want to go to Oslo in May."},
            {"role": "assistant", "content": "Noted: Oslo, May."},
            {"role": "user", "content": "Find me a hotel."},
        ],
        prompt_cache_key="codex-session-1",
        extra_body={"client_metadata": {"x": 1}, "store": False, "stream": False},
    )
    assert compacted.object == "response.compaction"
    assert [o.type for o in compacted.output] == ["message", "compaction"]
    assert compacted.output[0].role == "developer"  # instructions stay, verbatim, outside the item
    item = compacted.output[-1]
    assert item.id.startswith("cmp_")
    assert b"Oslo" not in _sealed(item) and b"SUMMARY" not in _sealed(item)
    assert compacted.usage.total_tokens == compacted.usage.input_tokens + compacted.usage.output_tokens > 0
    # The summary came from the routed model, with Continuo's compaction prompt.
    summary_call = up.last
    assert summary_call["model"] == "gpt-5-codex"
    assert summary_call["messages"][-1] == {"role": "user", "content": REQUEST} and INSTRUCTIONS in REQUEST
    assert summary_call["messages"][0] == {"role": "system", "content": "You are a travel agent."}
    assert "Find me a hotel." not in json.dumps(summary_call["messages"])  # the last turn is kept verbatim

    # Passed back as input, the item stands for what it replaced.
    next_input = [o.model_dump(exclude_none=True) for o in compacted.output]
    next_input.append({"role": "user", "content": "Any news?"})
    lc.responses.create(model="gpt-4.1", input=next_input)
    sent = up.last["messages"]
    assert sent[0] == {"role": "system", "content": "You are a travel agent."}
    assert sent[1]["role"] == "system" and sent[1]["content"].startswith(SUMMARY_HEADER)
    assert "SUMMARY: the user is Ada" in sent[1]["content"]
    assert [m["content"] for m in sent[2:]] == ["Find me a hotel.", "Any news?"]
    assert "I am Ada" not in json.dumps(sent)


def test_compact_a_stored_chain_by_previous_response_id(lc, up):
    first = lc.responses.create(model="gpt-4.1", input="Remember the code word: heron.")
    second = lc.responses.create(model="gpt-4.1", input="Say hi.", previous_response_id=first.id)
    up.script(Reply(text="The code word is heron."))
    compacted = lc.responses.compact(model="gpt-4.1", previous_response_id=second.id)
    assert compacted.output[-1].type == "compaction"
    assert "Remember the code word: heron." in json.dumps(up.last["messages"])


def test_a_changed_or_foreign_compaction_item_is_a_400(lc, up, fakes, tmp_path):
    up.script(Reply(text="summary"))
    item = lc.responses.compact(model="gpt-4.1", input="hello").output[-1]
    raw = bytearray(_sealed(item))
    raw[-1] ^= 1
    tampered = "cs1." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    for bad in (tampered, "plain summary text", ""):
        with pytest.raises(openai.BadRequestError) as exc:
            lc.responses.create(
                model="gpt-4.1",
                input=[
                    {"type": "compaction", "id": item.id, "encrypted_content": bad},
                    {"role": "user", "content": "hi"},
                ],
            )
        error = _error(exc.value)
        assert error["code"] == "invalid_encrypted_content" and error["param"] == "input[0]"
    with pytest.raises(openai.BadRequestError):
        lc.responses.create(
            model="gpt-4.1",
            background=True,
            input=[{"type": "compaction", "encrypted_content": tampered}, {"role": "user", "content": "hi"}],
        )
    # Another server (its own key, here from the environment) cannot open it either.
    os.environ[KEY_ENV] = "another-servers-key"
    _, _, exact_url, estimated_url = fakes
    other = ServerThread(
        create_app(_config(exact_url, estimated_url, tmp_path / "o.db", compaction_key_env=KEY_ENV))
    ).start()
    try:
        with openai.OpenAI(base_url=f"{other.url}/v1", api_key="k", max_retries=0) as foreign:
            with pytest.raises(openai.BadRequestError) as exc:
                foreign.responses.create(model="gpt-4.1", input=[item.model_dump(), {"role": "user", "content": "hi"}])
            assert _error(exc.value)["code"] == "invalid_encrypted_content"
    finally:
        other.stop()
    assert not any(r["messages"][-1]["content"] == "hi" for r in up.requests)  # none reached the upstream


def test_context_management_compacts_past_the_threshold_and_the_chain_goes_on(lc, up):
    previous = None
    for i in range(3):
        response = lc.responses.create(
            model="gpt-4.1", input=f"turn {i}: {LONG}", previous_response_id=previous, instructions="Be brief."
        )
        previous = response.id
    before = [*up.last["messages"], {"role": "assistant", "content": response.output_text}]
    up.reset()
    up.script(Reply(text="SUMMARY OF TURNS 0-2"), Reply(text="reply 3"))
    response = lc.responses.create(
        model="gpt-4.1",
        input="turn 3: what next?",
        previous_response_id=previous,
        instructions="Be brief.",
        context_management=[{"type": "compaction", "compact_threshold": 100}],
    )
    assert [o.type for o in response.output] == ["compaction", "message"]
    assert response.output_text == "reply 3"
    summary_call, answer_call = up.requests
    # The context the last answer was given (its instructions too), that answer, then the
    # request for the summary.
    assert summary_call["messages"] == [*before, {"role": "user", "content": REQUEST}]
    assert before[0] == {"role": "system", "content": "Be brief."}
    assert answer_call["messages"][0] == {"role": "system", "content": "Be brief."}
    assert "SUMMARY OF TURNS 0-2" in answer_call["messages"][1]["content"]
    assert [m["content"] for m in answer_call["messages"][2:]] == ["turn 3: what next?"]
    # Chained: everything before the compaction item is replaced by it.
    lc.responses.create(model="gpt-4.1", input="turn 4", previous_response_id=response.id)
    contents = [m["content"] for m in up.last["messages"]]
    assert SUMMARY_HEADER in contents[0] and contents[1:] == ["turn 3: what next?", "reply 3", "turn 4"]
    assert response.output[0].id in {i.id for i in lc.responses.retrieve(response.id).output}


def test_context_management_in_a_stream_shows_the_compaction_item_first(lc, up):
    up.script(Reply(text="SUMMARY"), Reply(text="streamed answer"))
    with lc.responses.stream(
        model="gpt-4.1",
        input=[*_turns(3), {"role": "user", "content": "go on"}],
        context_management=[{"type": "compaction", "compact_threshold": 50}],
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    added = [e for e in events if e.type == "response.output_item.added"]
    assert [e.item.type for e in added] == ["compaction", "message"]
    assert added[0].output_index == 0 and events[0].type == "response.created"
    assert [o.type for o in final.output] == ["compaction", "message"]
    assert final.output_text == "streamed answer"


def test_context_management_below_the_threshold_does_nothing(lc, up):
    response = lc.responses.create(
        model="gpt-4.1", input="short", context_management=[{"type": "compaction", "compact_threshold": 1000}]
    )
    assert [o.type for o in response.output] == ["message"]
    assert len(up.requests) == 1


def test_context_management_is_validated(lc, up):
    with pytest.raises(openai.BadRequestError) as exc:
        lc.responses.create(model="gpt-4.1", input="x", context_management=[{"type": "forget"}])
    assert _error(exc.value)["param"] == "context_management[0].type"
    with pytest.raises(openai.BadRequestError) as exc:
        lc.responses.create(
            model="gpt-4.1", input="x", context_management=[{"type": "compaction", "compact_threshold": 0}]
        )
    assert _error(exc.value)["param"] == "context_management[0].compact_threshold"


def test_truncation_never_keeps_an_output_without_its_call_wherever_the_cut_falls(lc, up):
    for pad, size in [(p, s) for p in range(0, 40, 10) for s in range(4, 40, 8)]:
        items = [
            {"role": "user", "content": "w " * pad},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city": "Rome"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "rain " * size},
            {"type": "function_call_output", "call_id": "c2", "output": "sun " * size},
            {"role": "user", "content": "and Paris? " + "x " * 30},
        ]
        lc.responses.create(model="gpt-small", input=items, truncation="auto", max_output_tokens=10)
        sent = up.last["messages"]
        called = {c["id"] for m in sent for c in m.get("tool_calls") or ()}
        answered = {m["tool_call_id"] for m in sent if m["role"] == "tool"}
        assert called == answered, (pad, size)


def test_a_background_run_compacts_too(lc, up):
    up.script(Reply(text="SUMMARY"), Reply(text="background answer"))
    events = list(
        lc.responses.create(
            model="gpt-4.1",
            input=[*_turns(2), {"role": "user", "content": "go on"}],
            context_management=[{"type": "compaction", "compact_threshold": 50}],
            background=True,
            stream=True,
        )
    )
    final = events[-1].response
    assert events[-1].type == "response.completed"
    assert [o.type for o in final.output] == ["compaction", "message"]
    assert [o.type for o in lc.responses.retrieve(final.id).output] == ["compaction", "message"]


def test_a_summary_that_cannot_fit_the_window_is_a_400_not_a_500(lc, up):
    with pytest.raises(openai.BadRequestError) as exc:
        lc.responses.create(
            model="gpt-tiny",
            input=[
                {"role": "user", "content": "one two three"},
                {"role": "assistant", "content": "four"},
                {"role": "user", "content": "five"},
            ],
            context_management=[{"type": "compaction", "compact_threshold": 5}],
        )
    assert _error(exc.value)["code"] == "context_length_exceeded"
