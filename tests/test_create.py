"""Creating responses through the openai SDK: the shape, the parameters the upstream gets."""

from __future__ import annotations

import json

import openai
import pytest

from continuo.api.app import create_app
from tests.support.configs import make_config
from tests.support.fake_chat import Reply
from tests.support.servers import ServerThread


def test_plain_response_has_every_field(client, upstream):
    response = client.responses.create(model="gpt-test", input="hello", instructions="Be brief.")
    assert response.status == "completed"
    assert response.output_text == "echo: hello"
    assert response.id.startswith("resp_")
    assert response.output[0].id.startswith("msg_")
    # Every field's presence and type is checked against both specs for every response the
    # suite sees (tests/support/wire.py); here, the values echoed for what was not sent.
    raw = client.responses.with_raw_response.retrieve(response.id).http_response.json()
    assert isinstance(raw["created_at"], int) and isinstance(raw["completed_at"], int)
    assert raw["instructions"] == "Be brief."
    assert (raw["temperature"], raw["top_p"], raw["presence_penalty"], raw["frequency_penalty"]) == (1, 1, 0, 0)
    assert (raw["top_logprobs"], raw["truncation"], raw["service_tier"]) == (0, "disabled", "default")
    assert "user" not in raw  # a string in OpenAI's schema, never null: left out when not sent
    assert raw["usage"]["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert raw["usage"]["output_tokens_details"] == {"reasoning_tokens": 0}
    assert upstream.last["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
    ]
    assert upstream.last["model"] == "fake-model"
    assert "stream" not in upstream.last


def test_upstream_key_comes_from_environment_and_headers_from_config(client, upstream):
    client.responses.create(model="gpt-test", input="hi")
    assert upstream.headers[-1]["authorization"] == "Bearer sk-upstream-secret"
    assert upstream.headers[-1]["x-tenant"] == "team-7"


def test_upstream_cookies_are_not_kept(upstream, tmp_path):
    # One session calls the upstream for every client: a cookie one answer sets must not
    # ride along on anyone's later calls. By name, not by IP: aiohttp keeps no cookies of
    # IP hosts anyway.
    config = make_config(upstream.url.replace("127.0.0.1", "localhost"), tmp_path / "c.db")
    server = ServerThread(create_app(config)).start()
    try:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk", max_retries=0) as client:
            upstream.script(Reply(text="first", headers={"set-cookie": "session=alice; Path=/"}), Reply(text="second"))
            client.responses.create(model="gpt-test", input="one")
            client.responses.create(model="gpt-test", input="two")
    finally:
        server.stop()
    assert "cookie" not in upstream.headers[-1]


def test_star_route_passes_requested_name(client, upstream):
    client.responses.create(model="llama-anything", input="hi")
    assert upstream.last["model"] == "llama-anything"


def test_parameters_pass_through(client, upstream):
    response = client.responses.create(
        model="gpt-test",
        input="hi",
        temperature=0.3,
        top_p=0.9,
        max_output_tokens=77,
        user="u-1",
        prompt_cache_key="pck",
        reasoning={"effort": "low"},
        extra_body={
            "seed": 7,
            "stop": ["END"],
            "top_k": 40,
            "repetition_penalty": 1.1,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.25,
        },
    )
    sent = upstream.last
    assert sent["temperature"] == 0.3
    assert sent["top_p"] == 0.9
    assert sent["max_tokens"] == 77
    assert sent["user"] == "u-1"
    assert sent["prompt_cache_key"] == "pck"
    assert sent["reasoning_effort"] == "low"
    assert (sent["seed"], sent["stop"], sent["top_k"], sent["repetition_penalty"]) == (7, ["END"], 40, 1.1)
    assert (sent["presence_penalty"], sent["frequency_penalty"]) == (0.5, -0.25)
    echoed = client.responses.retrieve(response.id).to_dict()
    assert (echoed["presence_penalty"], echoed["frequency_penalty"]) == (0.5, -0.25)
    assert (echoed["temperature"], echoed["top_p"], echoed["user"]) == (0.3, 0.9, "u-1")


def test_penalties_not_sent_are_not_sent_upstream(client, upstream):
    client.responses.create(model="gpt-test", input="hi")
    assert "presence_penalty" not in upstream.last and "frequency_penalty" not in upstream.last


def test_safety_identifier_is_sent_as_user(client, upstream):
    client.responses.create(model="gpt-test", input="hi", safety_identifier="safe-1")
    assert upstream.last["user"] == "safe-1"


def test_metadata_echoed_and_validated(client):
    response = client.responses.create(model="gpt-test", input="hi", metadata={"a": "1", "b": "2"})
    assert response.metadata == {"a": "1", "b": "2"}
    with pytest.raises(openai.BadRequestError) as too_many:
        client.responses.create(model="gpt-test", input="hi", metadata={str(i): "x" for i in range(17)})
    assert too_many.value.body["param"] == "metadata"
    with pytest.raises(openai.BadRequestError) as long_key:
        client.responses.create(model="gpt-test", input="hi", metadata={"k" * 65: "x"})
    assert long_key.value.body["param"] == "metadata"
    with pytest.raises(openai.BadRequestError) as long_value:
        client.responses.create(model="gpt-test", input="hi", metadata={"k": "v" * 513})
    assert long_value.value.body["param"] == "metadata.k"
    client.responses.create(model="gpt-test", input="hi", metadata={"k" * 64: "v" * 512})


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "json_object"}),
        (
            {
                "type": "json_schema",
                "name": "person",
                "strict": True,
                "schema": {"type": "object", "properties": {"n": {"type": "string"}}},
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "person",
                    "strict": True,
                    "schema": {"type": "object", "properties": {"n": {"type": "string"}}},
                },
            },
        ),
    ],
)
def test_text_format_maps_to_response_format(client, upstream, fmt, expected):
    upstream.script(Reply(text='{"n": "x"}'))
    response = client.responses.create(model="gpt-test", input="hi", text={"format": fmt})
    assert upstream.last.get("response_format") == expected
    assert response.text.format.type == fmt["type"]


def test_reasoning_becomes_reasoning_item_with_usage(client, upstream):
    upstream.script(Reply(text="42", reasoning="Let me think.", cached_tokens=5, reasoning_tokens=3))
    response = client.responses.create(model="gpt-test", input="q")
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert reasoning.content[0].type == "reasoning_text"
    assert reasoning.content[0].text == "Let me think."
    assert message.content[0].text == "42"
    assert response.usage.input_tokens_details.cached_tokens == 5
    assert response.usage.output_tokens_details.reasoning_tokens == 3


def test_reasoning_field_named_reasoning_is_understood(client, upstream):
    upstream.script(Reply(text="ok", reasoning="hmm", reasoning_field="reasoning"))
    response = client.responses.create(model="gpt-test", input="q")
    assert response.output[0].content[0].text == "hmm"


def test_max_output_tokens_makes_incomplete(client, upstream):
    upstream.script(Reply(text="cut sho", finish_reason="length"))
    response = client.responses.create(model="gpt-test", input="long", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output[0].status == "incomplete"
    assert client.responses.retrieve(response.id).status == "incomplete"


def test_images_and_files_reach_the_upstream(client, upstream):
    data_url = "data:image/png;base64,iVBORw0KGgo="
    client.responses.create(
        model="gpt-test",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": data_url, "detail": "low"},
                    {"type": "input_image", "image_url": "https://example.com/cat.png"},
                    {"type": "input_file", "filename": "a.txt", "file_data": "data:text/plain;base64,aGk="},
                ],
            }
        ],
    )
    assert upstream.last["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "file", "file": {"file_data": "data:text/plain;base64,aGk=", "filename": "a.txt"}},
    ]


def test_roles_map_to_chat_roles(client, upstream):
    client.responses.create(
        model="gpt-test",
        input=[
            {"role": "system", "content": "sys"},
            {"role": "developer", "content": "dev"},
            {"role": "user", "content": "u1"},
            {"role": "assistant", "content": "a1"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "u2"}]},
        ],
    )
    assert upstream.last["messages"] == [
        {"role": "system", "content": "sys"},
        {"role": "system", "content": "dev"},
        {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "u2"},
    ]


async def test_async_client(aclient, upstream):
    response = await aclient.responses.create(model="gpt-test", input="async hi")
    assert response.output_text == "echo: async hi"
    again = await aclient.responses.retrieve(response.id)
    assert again.output_text == "echo: async hi"


def test_json_schema_output_parses(client, upstream):
    upstream.script(Reply(text=json.dumps({"city": "Paris"})))
    response = client.responses.create(
        model="gpt-test",
        input="capital of France?",
        text={
            "format": {
                "type": "json_schema",
                "name": "answer",
                "schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            }
        },
    )
    assert json.loads(response.output_text) == {"city": "Paris"}
