"""A stateless Responses upstream behind Continuo: what it receives, and what clients see."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from continuo.api.app import create_app
from continuo.backends.base import Finish, ModelRequest, ReasoningDelta, ToolCallDelta, UpstreamError
from continuo.backends.http import MalformedStream, SSEParser
from continuo.backends.responses import Translator, build_payload
from continuo.config import parse_config
from tests.support.fake_responses import FakeResponsesUpstream, Reply, error_body
from tests.support.servers import ServerThread

KEY_ENV = "CONTINUO_TEST_RESPONSES_KEY"
SECRET = "sk-responses-upstream-secret"
UPSTREAM_ID = "_up_"  # in every id the fake upstream makes up

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


@pytest.fixture(scope="module")
def rupstream() -> Iterator[FakeResponsesUpstream]:
    fake = FakeResponsesUpstream()
    server = ServerThread(fake.app).start()
    fake.url = server.url
    yield fake
    server.stop()


def provider(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "responses",
        "base_url": f"{url}/v1",
        "api_key_env": KEY_ENV,
        "max_retries": 0,
        "timeout": 5,
        **extra,
    }


@pytest.fixture(scope="module")
def rserver(rupstream: FakeResponsesUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path_factory.mktemp('responses') / 'c.db'}"},
            "providers": [
                provider("resp", rupstream.url),
                provider("resp-short", rupstream.url, timeout=0.5),
                provider("resp-drop", rupstream.url, drop_params=["temperature", "prompt_cache_key", "web_search"]),
            ],
            "models": [
                {"name": "big", "provider": "resp", "upstream_model": "up-big"},
                {"name": "short", "provider": "resp-short"},
                {"name": "dropper", "provider": "resp-drop", "upstream_model": "up-drop"},
            ],
        }
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, SECRET)  # read when the providers are made, at startup
        running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _fresh_rupstream(rupstream: FakeResponsesUpstream) -> None:
    rupstream.reset()


@pytest.fixture
def client(rserver: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{rserver.url}/v1", api_key="sk-client", max_retries=0) as c:
        yield c


def raw_get(server: ServerThread, path: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/v1{path}")
    assert answer.status_code == 200, answer.text
    assert UPSTREAM_ID not in answer.text and SECRET not in answer.text
    body: dict[str, Any] = answer.json()
    return body


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assert_continuo_events(events: list[dict[str, Any]], final: dict[str, Any]) -> None:
    """Sequence numbers from 0 without a gap, one response id, items that are the final
    object's, nothing the upstream made up."""
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] in ("response.completed", "response.incomplete", "response.failed")
    assert {e["response"]["id"] for e in events if "response" in e} == {final["id"]}
    item_ids = {item["id"] for item in final["output"]}
    assert {e["item_id"] for e in events if "item_id" in e} <= item_ids
    assert UPSTREAM_ID not in json.dumps(events)


class Turns:
    """One client, three ways of asking: JSON, the SDK's stream helper, and a raw SSE
    stream read through the SDK (to see the bytes a client gets)."""

    def __init__(self, client: openai.OpenAI, streamed: bool) -> None:
        self.client = client
        self.streamed = streamed

    def json(self, **kwargs: Any) -> dict[str, Any]:
        raw = self.client.responses.with_raw_response.create(**kwargs)
        assert UPSTREAM_ID not in raw.text and SECRET not in raw.text
        body: dict[str, Any] = json.loads(raw.text)
        return body

    def helper(self, **kwargs: Any) -> dict[str, Any]:
        with self.client.responses.stream(**kwargs) as stream:
            events = [event.model_dump(mode="json", warnings=False) for event in stream]
            final: dict[str, Any] = stream.get_final_response().model_dump(mode="json", warnings=False)
        assert_continuo_events(events, final)
        assert events[-1]["response"]["id"] == final["id"]
        return final

    def sse(self, **kwargs: Any) -> dict[str, Any]:
        with self.client.responses.with_streaming_response.create(stream=True, **kwargs) as answer:
            lines = list(answer.iter_lines())
        text = "\n".join(lines)
        assert UPSTREAM_ID not in text and SECRET not in text
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        names = [line[7:] for line in lines if line.startswith("event: ")]
        assert names == [e["type"] for e in events]
        final: dict[str, Any] = events[-1]["response"]
        assert_continuo_events(events, final)
        return final

    def ask(self, way: str, **kwargs: Any) -> dict[str, Any]:
        if not self.streamed:
            return self.json(**kwargs)
        return self.helper(**kwargs) if way == "helper" else self.sse(**kwargs)


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_three_turn_chain_with_a_function_call(client, rserver, rupstream, streamed):
    turns = Turns(client, streamed)
    stream_flag = {"stream": True} if streamed else {}

    # Turn 1: the model calls a function.
    rupstream.script(Reply(tool_calls=[("get_weather", '{"city": "Paris"}')]))
    first = turns.ask("helper", model="big", input="Weather in Paris?", instructions="Be brief.", tools=[WEATHER])
    function_tool = {
        "type": "function",
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": WEATHER["parameters"],
        "strict": True,
    }
    assert rupstream.requests[0] == {
        "model": "up-big",
        "input": [user("Weather in Paris?")],
        "instructions": "Be brief.",
        "tools": [function_tool],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "store": False,
        **stream_flag,
    }
    [call] = first["output"]
    assert call["type"] == "function_call" and call["status"] == "completed"
    assert call["id"].startswith("fc_") and call["name"] == "get_weather"
    assert call["arguments"] == '{"city": "Paris"}'
    assert first["id"].startswith("resp_") and first["status"] == "completed"

    # Turn 2: the client sends the function's output, chained.
    rupstream.script(Reply(reasoning="The tool says 18.", text="Il fait 18 degrés."))
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": '{"temp_c": 18}'}
    second = turns.ask(
        "sse", model="big", input=[output], previous_response_id=first["id"], instructions="Answer in French."
    )
    sent_call = {
        "type": "function_call",
        "call_id": call["call_id"],
        "name": "get_weather",
        "arguments": call["arguments"],
    }
    assert rupstream.requests[1] == {
        "model": "up-big",
        "input": [user("Weather in Paris?"), sent_call, output],
        "instructions": "Answer in French.",
        "store": False,
        **stream_flag,
    }
    reasoning, message = second["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["content"] == [{"type": "reasoning_text", "text": "The tool says 18."}]
    assert message["type"] == "message" and message["id"].startswith("msg_")
    assert message["content"][0]["text"] == "Il fait 18 degrés."
    assert second["usage"]["input_tokens"] == 17
    assert second["usage"]["input_tokens_details"] == {"cached_tokens": 3, "cache_write_tokens": 0}
    assert second["usage"]["output_tokens_details"] == {"reasoning_tokens": 5}

    # Turn 3: a follow-up, chained, without instructions.
    rupstream.script(Reply(text="Demain aussi."))
    third = turns.ask("helper", model="big", input="And tomorrow?", previous_response_id=second["id"])
    stored_second = raw_get(rserver, f"/responses/{second['id']}")
    rs, msg = stored_second["output"]
    assert rupstream.requests[2] == {
        "model": "up-big",
        "input": [
            user("Weather in Paris?"),
            sent_call,
            output,
            # Output-shaped items keep the id (and the message its status) that the
            # Responses schema requires of them; they are Continuo's own.
            {"id": rs["id"], "type": "reasoning", "summary": [], "content": rs["content"]},
            msg,
            user("And tomorrow?"),
        ],
        "store": False,
        **stream_flag,
    }
    assert msg["status"] == "completed" and msg["role"] == "assistant"
    assert third["output"][0]["content"][0]["text"] == "Demain aussi."

    # What was answered is what is stored, under the same ids.
    for answered in (first, second, third):
        stored = raw_get(rserver, f"/responses/{answered['id']}")
        assert [item["id"] for item in stored["output"]] == [item["id"] for item in answered["output"]]
    items = raw_get(rserver, f"/responses/{third['id']}/input_items?order=asc")
    assert [item["type"] for item in items["data"]] == [
        "message",
        "function_call",
        "function_call_output",
        "reasoning",
        "message",
        "message",
    ]
    for request in rupstream.requests:
        assert not {"previous_response_id", "background", "conversation"} & set(request)


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("reason", ["max_output_tokens", "content_filter"])
def test_incomplete_answer_with_summarized_reasoning(client, rupstream, streamed, reason):
    rupstream.script(
        Reply(
            reasoning="First thought.\n\nSecond thought.", reasoning_kind="summary", text="Partial", incomplete=reason
        )
    )
    answer = Turns(client, streamed).ask("sse", model="big", input="Long story", max_output_tokens=16)
    assert rupstream.last["max_output_tokens"] == 16
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": reason}
    reasoning, message = answer["output"]
    assert reasoning["content"][0]["text"] == "First thought.\n\nSecond thought."
    assert message["content"][0]["text"] == "Partial" and message["status"] == "incomplete"


def test_stream_of_whole_items_only(client, rupstream):
    """Some servers send each item only when it is done, without deltas."""
    rupstream.script(Reply(text="Whole.", tool_calls=[("get_weather", '{"city": "Oslo"}')], items_only=True))
    answer = Turns(client, True).ask("helper", model="big", input="x", tools=[WEATHER])
    message, call = answer["output"]
    assert message["content"][0]["text"] == "Whole."
    assert (call["name"], call["arguments"]) == ("get_weather", '{"city": "Oslo"}')


def test_request_fields_are_passed_by_their_responses_names(client, rupstream):
    fn_a = {"type": "function", "name": "a", "parameters": {"type": "object", "properties": {}}}
    fn_b = {"type": "function", "name": "b", "description": "B", "parameters": {"type": "object", "properties": {}}}
    schema = {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "required": ["x"],
        "additionalProperties": False,
    }
    rupstream.script(Reply(tool_calls=[("a", "{}")]))
    client.responses.create(
        model="big",
        input="hi",
        tools=[
            {"type": "namespace", "name": "tools", "description": "grouped", "tools": [fn_a, fn_b]},
            WEATHER,
            {"type": "web_search"},
        ],
        tool_choice="required",
        parallel_tool_calls=False,
        text={"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=50,
        temperature=0.3,
        top_p=0.9,
        user="u-1",
        prompt_cache_key="pk-1",
        extra_body={"presence_penalty": 1.5, "frequency_penalty": 0},
    )
    assert rupstream.last == {
        "model": "up-big",
        "input": [user("hi")],
        "tools": [fn_a, fn_b, {**WEATHER}, {"type": "web_search"}],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "text": {"format": {"type": "json_schema", "name": "answer", "schema": schema, "strict": True}},
        "reasoning": {"effort": "low", "summary": "auto"},
        "max_output_tokens": 50,
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "u-1",
        "prompt_cache_key": "pk-1",
        "presence_penalty": 1.5,
        "frequency_penalty": 0,
        "store": False,
    }


def test_drop_params_leaves_fields_and_hosted_tools_out(client, rupstream):
    client.responses.create(
        model="dropper",
        input="hi",
        tools=[WEATHER, {"type": "web_search"}],
        temperature=0.5,
        top_p=0.5,
        prompt_cache_key="pk",
    )
    sent = rupstream.last
    assert sent["model"] == "up-drop"
    assert "temperature" not in sent and "prompt_cache_key" not in sent
    assert sent["top_p"] == 0.5
    assert sent["tools"] == [WEATHER]


def test_upstream_key_goes_upstream_only(client, rserver, rupstream):
    answer = client.responses.with_raw_response.create(model="big", input="hello")
    assert rupstream.headers[-1]["authorization"] == f"Bearer {SECRET}"
    assert "sk-client" not in json.dumps(rupstream.headers)
    rupstream.script(Reply(status=401, body=error_body("Incorrect API key provided.", code="invalid_api_key")))
    failed = httpx.post(f"{rserver.url}/v1/responses", json={"model": "big", "input": "x"})
    # The provider refused Continuo's key, not the client's: never a 401 to the client.
    assert failed.status_code == 502 and "'resp'" in failed.json()["error"]["message"]
    for text in (answer.text, failed.text):
        assert SECRET not in text


def test_fake_upstream_refuses_stateful_calls(rupstream):
    """The fake holds Continuo to what stateless providers accept."""
    url = f"{rupstream.url}/v1/responses"
    for extra, param in (
        ({"store": True}, "store"),
        ({}, "store"),  # store defaults to true on the Responses API
        ({"store": False, "previous_response_id": "resp_1"}, "previous_response_id"),
        ({"store": False, "background": True}, "background"),
    ):
        answer = httpx.post(url, json={"model": "m", "input": "x", **extra})
        assert answer.status_code == 400
        assert answer.json()["error"]["param"] == param


# -- failures ----------------------------------------------------------------------------

HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Down for maintenance</h1></body></html>"


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    ("reply", "status", "words"),
    [
        (Reply(status=503, body=HTML_PAGE, content_type="text/html"), 502, "HTML"),
        (Reply(status=200, body=HTML_PAGE, content_type="text/html"), 502, "HTML"),
        (Reply(status=500, body=error_body("GPU on fire", type="server_error")), 502, "GPU on fire"),
        (
            Reply(status=400, body=error_body("Invalid 'input': too long.", param="input")),
            400,
            "Invalid 'input': too long.",
        ),
    ],
    ids=["html-503", "html-200", "500", "400"],
)
def test_upstream_failures_map_to_openai_errors(client, rupstream, reply, status, words, streamed):
    rupstream.script(dataclasses.replace(reply))
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="big", input="x", stream=streamed)
    assert error.value.status_code == status
    body = error.value.body
    assert words in body["message"]
    if status >= 500:
        assert "'resp'" in body["message"]
        assert body["type"] == "server_error" and body["code"] == "upstream_error"
    assert SECRET not in json.dumps(body)


def test_non_json_answer_is_502(client, rupstream):
    rupstream.script(Reply(status=200, body=b"plain words", content_type="text/plain"))
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="big", input="x")
    assert error.value.status_code == 502
    assert "'resp'" in error.value.body["message"] and "not JSON" in error.value.body["message"]


def test_failed_response_object_is_502(client, rupstream):
    rupstream.script(Reply(failure="model crashed"))
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="big", input="x")
    assert error.value.status_code == 502
    assert "'resp'" in error.value.body["message"] and "model crashed" in error.value.body["message"]


@pytest.mark.parametrize("streamed", [False, True], ids=["json", "stream"])
def test_timeout_is_504(client, rupstream, streamed):
    rupstream.script(Reply(wait=2))
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="short", input="x", stream=streamed)
    assert error.value.status_code == 504
    assert "'resp-short'" in error.value.body["message"]
    assert error.value.body["code"] == "upstream_timeout"


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(text="Some words then trouble", error_after=6), "scripted failure"),
        (Reply(text="Some words", failure="model crashed"), "model crashed"),
        (Reply(text="Some words", cut_before_terminal=True), "ended the stream"),
    ],
    ids=["error-event", "response-failed", "cut"],
)
def test_failure_mid_stream_fails_the_response(client, rserver, rupstream, reply, words):
    rupstream.script(reply)
    events = [
        event.model_dump(mode="json", warnings=False)
        for event in client.responses.create(model="big", input="x", stream=True)
    ]
    final = events[-1]["response"]
    assert_continuo_events(events, final)
    assert events[-1]["type"] == "response.failed"
    assert final["status"] == "failed"
    assert words in final["error"]["message"] and "'resp'" in final["error"]["message"]
    assert raw_get(rserver, f"/responses/{final['id']}")["status"] == "failed"


# -- translation, without HTTP -----------------------------------------------------------


def feed_all(events: list[dict[str, Any]]) -> list[Any]:
    translator = Translator("p")
    return [delta for event in events for delta in translator.feed(event)]


def test_out_of_order_call_pieces_are_completed():
    deltas = feed_all(
        [
            {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": '{"a":'},
            {"type": "response.output_item.added", "output_index": 1, "item": {"type": "function_call", "name": "f"}},
            {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": " 1}"},
            {"type": "response.output_item.done", "output_index": 1, "item": {"type": "function_call", "name": "f"}},
            {"type": "response.completed", "response": {"status": "completed", "output": []}},
        ]
    )
    assert deltas == [
        ToolCallDelta(1, arguments='{"a":'),
        ToolCallDelta(1, name="f"),
        ToolCallDelta(1, arguments=" 1}"),
        Finish("tool_calls"),
    ]


def test_reasoning_said_twice_is_kept_once():
    deltas = feed_all(
        [
            {"type": "response.reasoning.delta", "output_index": 0, "delta": "raw"},  # Open Responses' name
            {"type": "response.reasoning_summary_text.delta", "output_index": 0, "summary_index": 0, "delta": "sum"},
            {"type": "response.reasoning_summary_text.delta", "output_index": 1, "summary_index": 0, "delta": "a"},
            {"type": "response.reasoning_summary_text.delta", "output_index": 1, "summary_index": 1, "delta": "b"},
        ]
    )
    assert deltas == [ReasoningDelta("raw"), ReasoningDelta("a"), ReasoningDelta("\n\n"), ReasoningDelta("b")]


@pytest.mark.parametrize(
    "event",
    [
        {"type": "error", "code": "x", "message": "flat", "param": None},
        {"type": "error", "error": {"message": "flat"}},
        {"type": "response.failed", "response": {"status": "failed", "error": {"message": "flat"}}},
    ],
)
def test_error_events_raise(event):
    with pytest.raises(UpstreamError) as error:
        feed_all([event])
    assert error.value.message == "provider 'p' failed: flat" and error.value.status == 502


def test_sse_parsing_joins_data_lines_and_skips_comments():
    stream = b': keep-alive\r\n\nevent: a\ndata: {\ndata: "x": 1}\n\ndata:[DONE]'
    parser = SSEParser()
    # Fed a byte at a time, as a slow upstream might send it: the same events.
    events = [event for i in range(len(stream)) for event in parser.feed(stream[i : i + 1])]
    assert events + parser.close() == [("a", b'{\n"x": 1}'), (None, b"[DONE]")]


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_sse_parsing_of_crlf_lines_and_fields_in_any_pieces(step):
    stream = (
        b"data: one\r\n\r\nevent: named\r\ndata:two\r\nid: 5\r\n\r\n"
        b": comment\ndata: three\ndata: four\n\ndata: \n\nretry: 10\n\ndata: last"
    )
    parser = SSEParser()
    events = [event for i in range(0, len(stream), step) for event in parser.feed(stream[i : i + step])]
    assert events + parser.close() == [
        (None, b"one"),
        ("named", b"two"),
        (None, b"three\nfour"),
        (None, b""),
        (None, b"last"),
    ]


def test_sse_parser_refuses_a_line_over_the_limit():
    parser = SSEParser(line_limit=8)
    with pytest.raises(MalformedStream):
        parser.feed(b"data: 0123456789")
    with pytest.raises(MalformedStream):
        SSEParser(line_limit=8).feed(b"data: 0123456789\n\n")


def test_payload_keeps_ids_only_where_the_schema_needs_them():
    request = ModelRequest(
        model="m",
        items=[
            {"id": "msg_1", "type": "message", "role": "user", "status": "completed", "content": []},
            {"id": "rs_1", "type": "reasoning", "status": "completed", "summary": []},
            {"id": "msg_2", "type": "message", "role": "assistant", "status": "completed", "content": []},
            {"id": "fc_1", "type": "function_call", "status": "done", "call_id": "c", "name": "f", "arguments": ""},
            {"id": "fco_1", "type": "function_call_output", "call_id": "c", "output": "ok"},
        ],
        tools=[WEATHER],
        tool_choice="auto",
        params={"parallel_tool_calls": True, "seed": 7},
        stream=False,
    )
    body = build_payload(request, ["tools", "seed"])
    assert body == {
        "model": "m",
        "input": [
            {"type": "message", "role": "user", "content": []},
            {"id": "rs_1", "type": "reasoning", "summary": []},
            {"id": "msg_2", "type": "message", "role": "assistant", "status": "completed", "content": []},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": ""},
            {"type": "function_call_output", "call_id": "c", "output": "ok"},
        ],
        "store": False,
    }


def _reference_events(stream: bytes) -> list[tuple[str | None, bytes]]:
    """Server-Sent Events as the parser defines them, read the slow and obvious way: lines
    end at LF (a CR before it is dropped), ``data`` lines gather, a blank line ends an
    event that has data, ``event`` names it, everything else is ignored."""
    events: list[tuple[str | None, bytes]] = []
    name, data = None, []
    for line in [*stream.split(b"\n"), b""]:
        line = line.removesuffix(b"\r")
        if not line:
            if data:
                events.append((name, b"\n".join(data)))
            name, data = None, []
            continue
        field, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode()
    return events


def test_sse_parsing_of_any_stream_in_any_pieces_matches_the_reference():
    import random

    rng = random.Random(20261201)  # fixed: the same streams at every run
    lines = [b"data: {}", b"data: [DONE]", b"data:x", b"data: a b", b"event: named", b": comment", b"id: 3", b""]
    for _ in range(3000):
        end = b"\r\n" if rng.random() < 0.2 else b"\n"
        stream = b"".join(rng.choice(lines) + end for _ in range(rng.randint(0, 30)))
        if rng.random() < 0.3:
            stream += rng.choice(lines)  # ends without a line end
        parser = SSEParser(line_limit=rng.choice([8, 1000]) if b"\r" not in stream else 1000)
        cuts = sorted(rng.sample(range(len(stream) + 1), min(len(stream) + 1, rng.randint(0, 6))))
        pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        try:
            events = [event for piece in pieces for event in parser.feed(piece)] + parser.close()
        except MalformedStream:
            assert parser.line_limit == 8 and any(len(line) > 8 for line in stream.split(b"\n"))
            continue
        assert events == _reference_events(stream), stream
