"""Long contexts behind a stateless Responses upstream (counts are estimates there), and
the Agents SDK's compaction session against Continuo."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import parse_config
from continuo.core.compaction import REQUEST, SUMMARY_HEADER
from tests.support.fake_chat import Reply as ChatReply
from tests.support.fake_responses import Reply
from tests.support.servers import ServerThread

agents = pytest.importorskip("agents", reason="openai-agents is not installed")


@pytest.fixture(scope="module")
def rserver(rfake, tmp_path_factory) -> Iterator[ServerThread]:
    provider = {"name": "r", "type": "responses", "base_url": f"{rfake.url}/v1", "max_retries": 0, "timeout": 5}
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path_factory.mktemp('lcr') / 'c.db'}"},
            "providers": [provider],
            "models": [{"name": "r-small", "provider": "r", "context_window": 400}, {"name": "*", "provider": "r"}],
        }
    )
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture
def rc(rserver, rfake) -> Iterator[openai.OpenAI]:
    rfake.reset()
    with openai.OpenAI(base_url=f"{rserver.url}/v1", api_key="k", max_retries=0) as c:
        yield c


WORDS = ("apple banana cherry dog " * 25).strip()  # 100 words, one o200k token each


def _texts(items: list[dict[str, Any]]) -> list[str]:
    out = []
    for item in items:
        content = item.get("content")
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.append(" ".join(p.get("text", "") for p in content))
    return out


def test_responses_provider_counts_are_o200k_estimates(rc, rfake):
    short = rc.responses.input_tokens.count(model="any", input="hi")
    longer = rc.responses.input_tokens.count(model="any", input="hi " + WORDS)
    assert longer.input_tokens - short.input_tokens == 100
    assert rfake.requests == []  # counting never calls a Responses upstream


def test_responses_provider_compaction_round_trip(rc, rfake):
    rfake.script(Reply(text="SUMMARY: Bob wants a red bike."))
    compacted = rc.responses.compact(
        model="gpt-5-codex",
        input=[
            {"role": "user", "content": "I am Bob; I want a red bike."},
            {"role": "assistant", "content": "A red bike, noted."},
            {"role": "user", "content": "Which size?"},
        ],
    )
    assert compacted.output[-1].type == "compaction"
    summary_call = rfake.last
    assert summary_call["store"] is False and not summary_call.get("instructions")
    assert _texts(summary_call["input"]) == ["I am Bob; I want a red bike.", "A red bike, noted.", REQUEST]
    item = compacted.output[-1].model_dump(exclude_none=True)
    rc.responses.create(model="gpt-5-codex", input=[item, {"role": "user", "content": "And the price?"}])
    sent = rfake.last["input"]
    assert sent[0]["role"] == "developer" and SUMMARY_HEADER in _texts(sent)[0]
    assert "compaction" not in json.dumps(sent)  # the upstream gets the summary, not the sealed item
    assert _texts(sent)[1:] == ["Which size?", "And the price?"]


def test_responses_provider_truncation_and_window(rc, rfake):
    items = [{"role": "system", "content": "Speak French."}]
    for i in range(6):
        items += [{"role": "user", "content": f"q{i} {WORDS}"}, {"role": "assistant", "content": f"a{i}"}]
    items.append({"role": "user", "content": "last question"})
    with pytest.raises(openai.BadRequestError) as exc:
        rc.responses.create(model="r-small", input=items)
    assert exc.value.response.json()["error"]["code"] == "context_length_exceeded"
    assert rfake.requests == []
    response = rc.responses.create(model="r-small", input=items, truncation="auto", max_output_tokens=50)
    assert response.status == "completed"
    texts = _texts(rfake.last["input"])
    assert texts[0] == "Speak French." and texts[-1] == "last question"
    assert not any(t.startswith("q0 ") for t in texts)
    counted = rc.responses.input_tokens.count(model="r-small", input=items, truncation="auto")
    assert counted.input_tokens <= 400 - 50


def test_responses_provider_context_management(rc, rfake):
    rfake.script(Reply(text="SUMMARY"), Reply(text="ok"))
    response = rc.responses.create(
        model="any",
        input=[
            {"role": "user", "content": f"q {WORDS}"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "next"},
        ],
        context_management=[{"type": "compaction", "compact_threshold": 50}],
    )
    assert [o.type for o in response.output] == ["compaction", "message"]
    assert _texts(rfake.last["input"])[1:] == ["next"]


# -- the Agents SDK's compaction session -------------------------------------------------------


async def test_agents_sdk_compaction_session(server, upstream, tmp_path):
    """The session refuses model names that are not OpenAI's (gpt-*, o*), so it asks for
    gpt-4.1, which Continuo routes to the fake upstream through "*"."""
    from agents.memory import OpenAIResponsesCompactionSession, SQLiteSession

    agents.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
    with pytest.raises(ValueError):
        OpenAIResponsesCompactionSession("s", SQLiteSession("s"), client=client, model="local")
    session = OpenAIResponsesCompactionSession(
        "s1",
        SQLiteSession("s1", str(tmp_path / "s.db")),
        client=client,
        model="gpt-4.1",
        should_trigger_compaction=lambda context: True,
    )
    model = agents.OpenAIResponsesModel(model="gpt-test", openai_client=client)
    agent = agents.Agent(name="a", instructions="Be brief.", model=model)
    upstream.script(
        ChatReply(text="Hello Ada."),
        ChatReply(text="Noted: blue."),
        ChatReply(text="SUMMARY: the user is Ada and likes blue."),
        ChatReply(text="You are Ada."),
    )
    first = await agents.Runner.run(agent, "My name is Ada.", session=session)
    assert first.final_output == "Hello Ada."
    # One turn: it is the latest, kept verbatim in the item; nothing to summarize yet.
    assert [item.get("type") for item in await session.get_items()][-1] == "compaction"
    assert len(upstream.requests) == 1
    await agents.Runner.run(agent, "I like blue.", session=session)
    assert upstream.requests[1]["messages"][1:] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "I like blue."},
    ]
    summary_call = upstream.requests[2]
    # The session's compact call sends no instructions: the stored turns, then the request.
    assert summary_call["messages"][-1] == {"role": "user", "content": REQUEST}
    assert "My name is Ada." in json.dumps(summary_call["messages"])
    third = await agents.Runner.run(agent, "What is my name?", session=session)
    assert third.final_output == "You are Ada."
    sent = upstream.requests[3]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert SUMMARY_HEADER in sent[1]["content"] and "the user is Ada" in sent[1]["content"]
    assert "My name is Ada." not in json.dumps(sent)
    assert sent[-1] == {"role": "user", "content": "What is my name?"}
    await client.close()
