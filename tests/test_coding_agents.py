"""What coding agents send: custom (freeform) tools, namespace groups, shell tools, and
compressed request bodies."""

from __future__ import annotations

import gzip
import json
from typing import Any

import httpx
import openai
import orjson
import zstandard

from tests.support.fake_chat import FakeChatUpstream, Reply
from tests.support.mcp_streams import stream_events
from tests.support.servers import ServerThread

PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hi\n*** End Patch"
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Apply a patch to the workspace.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)*/'},
}


def test_a_custom_tool_is_a_one_string_function_upstream(client: openai.OpenAI, upstream: FakeChatUpstream) -> None:
    upstream.script(Reply(tool_calls=[("apply_patch", json.dumps({"input": PATCH}))]))
    first = client.responses.create(model="gpt-test", input="add hello.txt", tools=[APPLY_PATCH])
    offered = upstream.requests[0]["tools"][0]["function"]
    assert offered["name"] == "apply_patch"
    assert offered["parameters"]["required"] == ["input"]
    assert "lark" in offered["parameters"]["properties"]["input"]["description"]
    assert [i.type for i in first.output] == ["custom_tool_call"]
    call = first.output[0]
    assert (call.name, call.input) == ("apply_patch", PATCH)  # type: ignore[union-attr]
    # Its output goes back as the function's result next turn.
    upstream.script(Reply(text="Patched."))
    second = client.responses.create(
        model="gpt-test",
        previous_response_id=first.id,
        tools=[APPLY_PATCH],
        input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}],  # type: ignore[union-attr]
    )
    assert second.output_text == "Patched."
    messages = upstream.requests[1]["messages"]
    assistant = messages[-2]["tool_calls"][0]
    assert assistant["id"] == call.call_id  # type: ignore[union-attr]
    assert json.loads(assistant["function"]["arguments"]) == {"input": PATCH}
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "Done!"}  # type: ignore[union-attr]


def test_a_custom_tool_call_streams_its_input(server: ServerThread, upstream: FakeChatUpstream) -> None:
    upstream.script(Reply(tool_calls=[("apply_patch", json.dumps({"input": PATCH}))]))
    events = stream_events(server, model="gpt-test", input="patch", tools=[APPLY_PATCH])
    done = next(e for e in events if e["type"] == "response.custom_tool_call_input.done")
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.custom_tool_call_input.delta")
    assert done["input"] == deltas == PATCH
    assert events[-1]["response"]["output"][0]["input"] == PATCH


def test_namespaces_and_shell_tools_are_accepted(client: openai.OpenAI, upstream: FakeChatUpstream) -> None:
    tools: list[dict[str, Any]] = [
        {
            "type": "namespace",
            "name": "repo",
            "description": "Repository tools",
            "tools": [{"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {}}}],
        },
        {"type": "local_shell"},
        {"type": "shell"},
    ]
    response = client.responses.create(model="gpt-test", input="hi", tools=tools)  # type: ignore[arg-type]
    assert response.status == "completed"
    assert [t["function"]["name"] for t in upstream.requests[0]["tools"]] == ["read_file"]


def _post(server: ServerThread, body: bytes, encoding: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/responses",
        content=body,
        headers={"content-type": "application/json", "content-encoding": encoding},
        timeout=30,
    )


def test_compressed_bodies_are_accepted(server: ServerThread) -> None:
    body = orjson.dumps({"model": "gpt-test", "input": "squeezed"})
    for encoding, packed in (("zstd", zstandard.ZstdCompressor().compress(body)), ("gzip", gzip.compress(body))):
        answer = _post(server, packed, encoding)
        assert answer.status_code == 200, answer.text
        assert answer.json()["output"][0]["content"][0]["text"] == "echo: squeezed"


def test_the_size_limit_applies_after_decompression(server: ServerThread) -> None:
    # 2 MiB is the test server's limit; this body is a few kilobytes compressed.
    huge = b'{"model": "gpt-test", "input": "' + b"a" * (64 * 1024 * 1024) + b'"}'
    for encoding, packed in (("zstd", zstandard.ZstdCompressor().compress(huge)), ("gzip", gzip.compress(huge, 9))):
        assert len(packed) < 200_000
        answer = _post(server, packed, encoding)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "request_too_large"


def test_bad_or_unknown_encodings_are_refused(server: ServerThread) -> None:
    assert _post(server, b"not gzip at all", "gzip").status_code == 400
    assert _post(server, b"not zstd", "zstd").json()["error"]["code"] == "invalid_body"
    answer = _post(server, b"{}", "br")
    assert answer.status_code == 415 and answer.json()["error"]["type"] == "invalid_request_error"
