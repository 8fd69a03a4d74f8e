"""The OpenAI Agents SDK itself, running an agent with a tool against Continuo."""

from __future__ import annotations

import openai
import pytest

from tests.support.fake_chat import Reply
from tests.support.requires import require

agents = require("agents", "openai-agents is not installed")


def agent_with_tool(server) -> tuple[object, list[str]]:
    agents.set_tracing_disabled(True)
    calls: list[str] = []

    @agents.function_tool
    def lookup(q: str) -> str:
        """Look something up."""
        calls.append(q)
        return f"{q} is 1"

    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
    model = agents.OpenAIResponsesModel(model="gpt-test", openai_client=client)
    return agents.Agent(name="finder", instructions="Use lookup.", tools=[lookup], model=model), calls


@pytest.mark.parametrize("streamed", [False, True])
async def test_agent_runs_a_tool_and_answers(server, upstream, streamed):
    upstream.script(Reply(tool_calls=[("lookup", '{"q": "x"}')]), Reply(text="x is one"))
    agent, calls = agent_with_tool(server)
    if streamed:
        result = agents.Runner.run_streamed(agent, "what is x?")
        kinds = [event.type async for event in result.stream_events()]
        assert "raw_response_event" in kinds
    else:
        result = await agents.Runner.run(agent, "what is x?")
    assert calls == ["x"]
    assert result.final_output == "x is one"
    second = upstream.requests[-1]["messages"]
    assert second[0] == {"role": "system", "content": "Use lookup."}
    assert second[-1]["role"] == "tool" and second[-1]["content"] == "x is 1"
    assert second[-2]["tool_calls"][0]["function"]["name"] == "lookup"


async def test_agent_chains_with_previous_response_id(server, upstream):
    upstream.script(Reply(tool_calls=[("lookup", '{"q": "y"}')]), Reply(text="y is one"))
    agent, calls = agent_with_tool(server)
    result = await agents.Runner.run(agent, "what is y?", previous_response_id=None, auto_previous_response_id=True)
    assert result.final_output == "y is one" and calls == ["y"]
    # The second call of the run chained on the first, and Continuo rebuilt the history.
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="k") as sync:
        last = sync.responses.retrieve(result.last_response_id)
    assert last.previous_response_id is not None
    assert [m["role"] for m in upstream.requests[-1]["messages"]] == ["system", "user", "assistant", "tool"]


def plain_agent(server) -> tuple[object, openai.AsyncOpenAI]:
    agents.set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
    model = agents.OpenAIResponsesModel(model="gpt-test", openai_client=client)
    return agents.Agent(name="rememberer", instructions="Remember names.", model=model), client


def contents(request: dict) -> list[str]:
    return [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in request["messages"]]


async def test_openai_conversations_session_three_turns(server, upstream):
    """The session keeps the history in Continuo's Conversations API: the third turn's
    answer rests on what the first turn said."""
    agent, client = plain_agent(server)
    session = agents.OpenAIConversationsSession(openai_client=client)
    upstream.script(Reply(text="Nice to meet you, Ada."), Reply(text="It is sunny."), Reply(text="Your name is Ada."))
    first = await agents.Runner.run(agent, "My name is Ada.", session=session)
    second = await agents.Runner.run(agent, "How is the weather?", session=session)
    third = await agents.Runner.run(agent, "What is my name?", session=session)
    assert [first.final_output, second.final_output, third.final_output] == [
        "Nice to meet you, Ada.",
        "It is sunny.",
        "Your name is Ada.",
    ]
    assert contents(upstream.requests[2]) == [
        "Remember names.",
        "My name is Ada.",
        "Nice to meet you, Ada.",
        "How is the weather?",
        "It is sunny.",
        "What is my name?",
    ]
    stored = await client.conversations.items.list(session.session_id, order="asc")
    assert len(stored.data) == 6
    await session.clear_session()


async def test_runner_with_a_server_side_conversation(server, upstream):
    """``conversation_id`` on a run: the SDK sends only the new input, Continuo adds the
    history."""
    agent, client = plain_agent(server)
    conversation = await client.conversations.create()
    upstream.script(Reply(text="Hello Ada."), Reply(text="Your name is Ada."))
    await agents.Runner.run(agent, "My name is Ada.", conversation_id=conversation.id)
    third = await agents.Runner.run(agent, "What is my name?", conversation_id=conversation.id)
    assert third.final_output == "Your name is Ada."
    assert contents(upstream.last) == ["Remember names.", "My name is Ada.", "Hello Ada.", "What is my name?"]


async def test_agent_runs_a_tool_loop_over_a_websocket(server, upstream):
    """The SDK's WebSocket model: both turns of the run go over one socket, the second
    chained to the first by previous_response_id."""
    upstream.script(Reply(tool_calls=[("lookup", '{"q": "z"}')]), Reply(text="z is one"))
    agent, calls = agent_with_tool(server)
    client = openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)
    model = agents.OpenAIResponsesWSModel(model="gpt-test", openai_client=client)
    agent.model = model
    try:
        result = await agents.Runner.run(agent, "what is z?", auto_previous_response_id=True)
    finally:
        await model.close()
    assert calls == ["z"] and result.final_output == "z is one"
    second = upstream.requests[-1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "tool"]
    assert second[-1]["content"] == "z is 1"
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="k") as sync:
        last = sync.responses.retrieve(result.last_response_id)
    assert last.previous_response_id is not None and last.output_text == "z is one"
