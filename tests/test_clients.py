"""Requests shaped like the ones real clients send (DESIGN.md, observed 2026-11)."""

from __future__ import annotations

import orjson

from tests.support.fake_chat import Reply
from tests.support.sse import parse, raw_sse


def test_codex_turn(server, upstream, client):
    """Codex: streamed, store false, the whole history every turn, ids the server never
    stored, a namespace of functions and a hosted tool, fields in neither spec."""
    upstream.script(Reply(reasoning="look at the file", tool_calls=[("shell", '{"command": ["ls"]}')]))
    body = {
        "model": "gpt-test",
        "instructions": None,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {
                "type": "message",
                "id": "msg_client_1",
                "role": "user",
                "content": [{"type": "input_text", "text": "list files"}],
            },
            {
                "type": "reasoning",
                "id": "rs_earlier",
                "summary": [{"type": "summary_text", "text": "plan"}],
                "encrypted_content": "opaque",
            },
            {
                "type": "function_call",
                "id": "fc_earlier",
                "call_id": "call_1",
                "name": "shell",
                "arguments": '{"command": ["pwd"]}',
            },
            {"type": "function_call_output", "id": "fco_client_1", "call_id": "call_1", "output": "/work"},
        ],
        "tools": [
            {
                "type": "function",
                "name": "shell",
                "parameters": {"type": "object", "properties": {"command": {"type": "array"}}},
                "strict": False,
            },
            {
                "type": "namespace",
                "name": "mcp",
                "description": "MCP tools",  # required by OpenAI's schema
                "tools": [
                    {"type": "function", "name": "read_page", "parameters": {"type": "object", "properties": {}}}
                ],
            },
            {"type": "web_search", "external_web_access": False},
        ],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "session-1",
        "client_metadata": {"session": "abc"},
    }
    head, chunks = raw_sse(server.port, body)
    assert " 200 " in head.splitlines()[0]
    events = parse(chunks)
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [item["type"] for item in done] == ["reasoning", "function_call"]
    assert events[-1]["type"] == "response.completed"
    assert [t["function"]["name"] for t in upstream.last["tools"]] == ["shell", "read_page"]
    assert upstream.last["messages"][0] == {"role": "system", "content": "You are Codex."}
    assert upstream.last["messages"][2]["reasoning_content"] == "plan"
    assert upstream.last["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "/work"}
    # Nothing was stored, and the next turn resends the history with the server's fc_ id.
    call = done[1]
    follow = {
        **body,
        "input": [
            *body["input"],
            done[0],
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "a.txt"},
        ],
    }
    _, more = raw_sse(server.port, follow)
    assert parse(more)[-1]["type"] == "response.completed"
    assert upstream.last["messages"][-1] == {"role": "tool", "tool_call_id": call["call_id"], "content": "a.txt"}


def test_agents_sdk_turns(client, upstream):
    """OpenAI Agents SDK: instructions, strict tools, untyped messages, include [], no
    store field; later calls of a run carry only function_call_output items."""
    tool = {
        "type": "function",
        "name": "lookup",
        "parameters": {
            "type": "object",
            "properties": {"q": {"type": "string"}},
            "required": ["q"],
            "additionalProperties": False,
        },
        "strict": True,
    }
    upstream.script(Reply(tool_calls=[("lookup", '{"q": "x"}')]))
    first = client.responses.create(
        model="gpt-test",
        instructions="Be an agent.",
        input=[{"role": "user", "content": "find x"}],
        tools=[tool],
        include=[],
    )
    call = first.output[0]
    second = client.responses.create(
        model="gpt-test",
        instructions="Be an agent.",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "x is 1"}],
        tools=[tool],
        include=[],
    )
    assert second.status == "completed"
    sent = upstream.last["messages"]
    assert sent[0] == {"role": "system", "content": "Be an agent."}
    assert sent[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "x is 1"}
    assert orjson.loads(sent[-2]["tool_calls"][0]["function"]["arguments"]) == {"q": "x"}
