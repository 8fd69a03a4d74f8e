"""previous_response_id, tools, item references, store, retrieve, delete, input items."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.support.fake_chat import Reply

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


def test_chain_sends_whole_history_without_old_instructions(client, upstream):
    first = client.responses.create(model="gpt-test", input="one", instructions="first rules")
    second = client.responses.create(model="gpt-test", input="two", previous_response_id=first.id)
    third = client.responses.create(
        model="gpt-test", input="three", previous_response_id=second.id, instructions="third rules"
    )
    assert upstream.requests[1]["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one"},
        {"role": "user", "content": "two"},
    ]
    assert upstream.last["messages"] == [
        {"role": "system", "content": "third rules"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "echo: one"},
        {"role": "user", "content": "two"},
        {"role": "assistant", "content": "echo: two"},
        {"role": "user", "content": "three"},
    ]
    assert third.previous_response_id == second.id
    assert client.responses.retrieve(second.id).instructions is None


def test_branches_from_one_parent(client, upstream):
    root = client.responses.create(model="gpt-test", input="root")
    left = client.responses.create(model="gpt-test", input="left", previous_response_id=root.id)
    right = client.responses.create(model="gpt-test", input="right", previous_response_id=root.id)
    client.responses.create(model="gpt-test", input="after-left", previous_response_id=left.id)
    texts = [m["content"] for m in upstream.last["messages"]]
    assert texts == ["root", "echo: root", "left", "echo: left", "after-left"]
    client.responses.create(model="gpt-test", input="after-right", previous_response_id=right.id)
    texts = [m["content"] for m in upstream.last["messages"]]
    assert texts == ["root", "echo: root", "right", "echo: right", "after-right"]


def test_unknown_previous_response_is_400(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model="gpt-test", input="x", previous_response_id="resp_nope")
    body = error.value.body
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "previous_response_id"
    assert body["code"] == "previous_response_not_found"


def test_store_false_persists_nothing(client, upstream):
    response = client.responses.create(model="gpt-test", input="secret", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model="gpt-test", input="x", previous_response_id=response.id)
    assert error.value.body["code"] == "previous_response_not_found"


def _tool_round(client, upstream, *, with_previous: bool):
    upstream.script(
        Reply(
            reasoning="need weather",
            text="Checking.",
            tool_calls=[("get_weather", '{"city": "Oslo"}'), ("get_weather", '{"city": "Rome"}')],
        )
    )
    first = client.responses.create(
        model="gpt-test",
        input="weather in Oslo and Rome?",
        tools=[WEATHER],
        tool_choice="auto",
        parallel_tool_calls=True,
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather", "get_weather"]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Oslo"}, {"city": "Rome"}]
    assert all(c.id.startswith("fc_") and c.call_id.startswith("call_") for c in calls)
    assert upstream.last["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": WEATHER["parameters"],
                "strict": True,
            },
        }
    ]
    assert upstream.last["tool_choice"] == "auto"
    assert upstream.last["parallel_tool_calls"] is True
    outputs = [
        {"type": "function_call_output", "call_id": c.call_id, "output": f"sunny {i}"} for i, c in enumerate(calls)
    ]
    if with_previous:
        second = client.responses.create(
            model="gpt-test", input=outputs, previous_response_id=first.id, tools=[WEATHER]
        )
    else:
        history = [{"role": "user", "content": "weather in Oslo and Rome?"}] + [
            item.model_dump(exclude_none=True) for item in first.output
        ]
        second = client.responses.create(model="gpt-test", input=history + outputs, tools=[WEATHER])
    assert second.status == "completed"
    expected = [
        {"role": "user", "content": "weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "reasoning_content": "need weather",
            "tool_calls": [
                {
                    "id": calls[0].call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                },
                {
                    "id": calls[1].call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": calls[0].call_id, "content": "sunny 0"},
        {"role": "tool", "tool_call_id": calls[1].call_id, "content": "sunny 1"},
    ]
    assert upstream.last["messages"] == expected


def test_tool_round_with_previous_response_id(client, upstream):
    _tool_round(client, upstream, with_previous=True)


def test_tool_round_with_whole_history(client, upstream):
    _tool_round(client, upstream, with_previous=False)


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("none", None),
        ("required", "required"),
        ({"type": "function", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice(client, upstream, choice, sent):
    response = client.responses.create(model="gpt-test", input="hi", tools=[WEATHER], tool_choice=choice)
    assert upstream.last.get("tool_choice") == sent
    if choice == "none":
        assert "tools" not in upstream.last
    assert response.tool_choice == choice or response.tool_choice.name == "get_weather"
    assert response.tools[0].name == "get_weather" and response.tools[0].strict is True


def test_tool_choice_naming_unknown_function_is_400(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(
            model="gpt-test", input="hi", tools=[WEATHER], tool_choice={"type": "function", "name": "nope"}
        )
    assert error.value.body["param"] == "tool_choice"


def test_namespace_and_hosted_tools_are_accepted(client, upstream):
    client.responses.create(
        model="gpt-test",
        input="hi",
        tools=[
            {
                "type": "namespace",
                "name": "fs",
                "description": "files",
                "tools": [
                    {"type": "function", "name": "read_file", "parameters": {"type": "object", "properties": {}}}
                ],
            },
            {"type": "web_search", "external_web_access": False},
        ],
        extra_body={"client_metadata": {"x": 1}},
    )
    assert [t["function"]["name"] for t in upstream.last["tools"]] == ["read_file"]


def test_reasoning_in_input_goes_back_as_reasoning_content(client, upstream):
    client.responses.create(
        model="gpt-test",
        input=[
            {"role": "user", "content": "q"},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [],
                "content": [{"type": "reasoning_text", "text": "thinking"}],
            },
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "a"}]},
            {"role": "user", "content": "q2"},
        ],
    )
    assert upstream.last["messages"][1] == {"role": "assistant", "content": "a", "reasoning_content": "thinking"}


def test_item_reference(client, upstream):
    first = client.responses.create(model="gpt-test", input="remember me")
    ref = first.output[0].id
    client.responses.create(
        model="gpt-test", input=[{"type": "item_reference", "id": ref}, {"role": "user", "content": "next"}]
    )
    assert upstream.last["messages"] == [
        {"role": "assistant", "content": "echo: remember me"},
        {"role": "user", "content": "next"},
    ]
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model="gpt-test", input=[{"type": "item_reference", "id": "msg_missing"}])
    assert error.value.body["param"] == "input[0].id"


def test_images_survive_a_chain(client, upstream):
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    first = client.responses.create(
        model="gpt-test", input=[{"role": "user", "content": [{"type": "input_text", "text": "see"}, image]}]
    )
    client.responses.create(model="gpt-test", input="and?", previous_response_id=first.id)
    assert upstream.last["messages"][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }


def test_retrieve_delete(client):
    response = client.responses.create(model="gpt-test", input="keep")
    assert client.responses.retrieve(response.id) == response
    deleted = client.responses.with_raw_response.delete(response.id).http_response.json()
    assert deleted == {"id": response.id, "object": "response", "deleted": True}
    with pytest.raises(openai.NotFoundError) as error:
        client.responses.retrieve(response.id)
    assert error.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.input_items.list(response.id)


def test_input_items_are_the_whole_context(client):
    first = client.responses.create(model="gpt-test", input="a")
    second = client.responses.create(
        model="gpt-test",
        input=[{"role": "user", "content": "b"}, {"role": "user", "content": "c"}],
        previous_response_id=first.id,
    )
    third = client.responses.create(model="gpt-test", input="d", previous_response_id=second.id)

    def text(item):
        return item.content[0].text

    asc = client.responses.input_items.list(third.id, order="asc")
    assert [text(i) for i in asc.data] == ["a", "echo: a", "b", "c", "echo: c", "d"]
    assert all(i.id for i in asc.data)
    desc = client.responses.input_items.list(third.id)
    assert [text(i) for i in desc.data] == ["d", "echo: c", "c", "b", "echo: a", "a"]
    page = client.responses.input_items.list(third.id, order="asc", limit=2)
    assert [text(i) for i in page.data] == ["a", "echo: a"] and page.has_more
    assert page.first_id == page.data[0].id and page.last_id == page.data[1].id
    rest = client.responses.input_items.list(third.id, order="asc", limit=2, after=page.last_id)
    assert [text(i) for i in rest.data] == ["b", "c"]
    everything = [text(i) for i in client.responses.input_items.list(third.id, order="asc", limit=1)]
    assert everything == ["a", "echo: a", "b", "c", "echo: c", "d"]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=x", "order=up"])
def test_input_items_bad_query(client, query):
    response = client.responses.create(model="gpt-test", input="a")
    answer = httpx.get(f"{client.base_url}responses/{response.id}/input_items?{query}")
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == query.split("=")[0]
