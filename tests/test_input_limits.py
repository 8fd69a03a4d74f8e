"""Inputs that used to reach a 500, on SQLite and on PostgreSQL: nesting orjson cannot
write back, integers past 64 bits or past a field's range, out-of-range ``starting_after``,
ids that cannot exist, malformed reasoning items and URL schemes. Each is a 400 (or the
404 an unknown id gets) before anything is stored or sent upstream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from continuo.api.app import create_app
from tests.support.configs import make_config
from tests.support.servers import ServerThread


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db_server(request: pytest.FixtureRequest, upstream: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = make_config(upstream.url, tmp_path_factory.mktemp("limits") / "c.db")
    if request.param == "postgres":
        config.database.url = request.getfixturevalue("pg_url")
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture
def http(db_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{db_server.url}/v1", timeout=30) as client:
        yield client


def refused(answer: httpx.Response, status: int = 400, param: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param, error
    return error


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"x": value}
    return value


DEEP = "__deep__"


def create(http: httpx.Client, depth: int = 0, **fields: Any) -> httpx.Response:
    """POST a request; ``DEEP`` in it becomes a value nested ``depth`` levels (written by
    hand: Python's json, like orjson, refuses to write that deep)."""
    text = json.dumps({"model": "gpt-test", "input": "hi", **fields})
    deep = '{"x": [' * (depth // 2) + '"leaf"' + "]}" * (depth // 2)
    return http.post(
        "/responses", content=text.replace(f'"{DEEP}"', deep), headers={"content-type": "application/json"}
    )


@pytest.mark.parametrize("depth", [200, 253, 600, 1000])
@pytest.mark.parametrize(
    ("where", "param"),
    [
        ("tools", "tools"),
        ("unknown", "client_metadata"),
        ("item", "input"),
        ("schema", "text"),
    ],
)
def test_nesting_too_deep_to_write_is_400(http, upstream, depth, where, param):
    deep = DEEP
    if where == "tools":
        fields = {"tools": [{"type": "function", "name": "f", "parameters": {"type": "object", "x": deep}}]}
    elif where == "unknown":
        fields = {"client_metadata": deep}
    elif where == "item":
        fields = {"input": [{"role": "user", "content": "hi", "extra": deep}]}
    else:
        fields = {"text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object", "x": deep}}}}
    for mode in ({}, {"stream": True}, {"background": True}):
        refused(create(http, depth, **fields, **mode), param=param)
    assert upstream.requests == []


def test_ordinary_nesting_is_fine(http):
    schema = {"type": "object", "properties": {"a": nested(40)}}
    answer = create(http, tools=[{"type": "function", "name": "f", "parameters": schema}])
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_output_tokens": 1e20}, "max_output_tokens"),
        ({"max_output_tokens": 2**64}, "max_output_tokens"),
        ({"max_output_tokens": 2**31}, "max_output_tokens"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -1e19}, "seed"),
        ({"top_k": 2**64}, "top_k"),
        ({"max_tool_calls": 2**70}, "max_tool_calls"),
        ({"top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": -1}, "top_logprobs"),
        # orjson reads integers up to 2**64 - 1 as integers, larger ones as floats.
        ({"client_metadata": {"n": 2**64 - 1}}, "client_metadata"),
        ({"input": [{"role": "user", "content": "hi", "n": 2**63}]}, "input"),
        ({"tools": [{"type": "web_search", "n": 2**64 - 1}]}, "tools"),
    ],
)
def test_integers_out_of_range_are_400_naming_the_field(http, upstream, fields, param):
    for mode in ({}, {"background": True}):
        refused(create(http, **fields, **mode), param=param)
    assert upstream.requests == []


def test_integers_in_range_pass(http):
    answer = create(http, seed=2**63 - 1, top_k=40, max_output_tokens=2**31 - 1, top_logprobs=20)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("after", [str(2**31), str(2**63), str(2**64), "-5", "9" * 5000])
def test_starting_after_out_of_range_is_400_before_the_stream(http, after):
    queued = create(http, background=True).json()
    answer = http.get(f"/responses/{queued['id']}", params={"stream": "true", "starting_after": after})
    refused(answer, param="starting_after")


BAD_IDS = ["resp_" + "a" * 200, "resp_%00abc", "resp_a%01b", "x" * 65]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "suffix"), [("GET", ""), ("DELETE", ""), ("POST", "/cancel"), ("GET", "/input_items")]
)
def test_ids_that_cannot_exist_are_404(http, bad, method, suffix):
    error = refused(http.request(method, f"/responses/{bad}{suffix}"), status=404)
    unknown = refused(http.request(method, f"/responses/resp_unknown{suffix}"), status=404)
    assert (error["type"], error["code"]) == (unknown["type"], unknown["code"])


@pytest.mark.parametrize("bad", ["resp_" + "a" * 200, "resp_\x00abc", "resp_\x1b[31m"])
def test_previous_response_id_that_cannot_exist_is_not_found(http, upstream, bad):
    error = refused(create(http, previous_response_id=bad), param="previous_response_id")
    assert error["code"] == "previous_response_not_found"
    assert upstream.requests == []


@pytest.mark.parametrize("bad", ["msg_" + "a" * 200, "msg_\x00"])
def test_item_reference_that_cannot_exist_is_not_found(http, bad):
    error = refused(create(http, input=[{"type": "item_reference", "id": bad}]), param="input[0].id")
    assert error["code"] == "item_not_found"


@pytest.mark.parametrize("bad", ["msg_" + "a" * 200, "msg_\x00", "msg_\nx"])
def test_input_item_ids_that_cannot_be_stored_are_400(http, upstream, bad):
    refused(create(http, input=[{"role": "user", "content": "hi", "id": bad}]), param="input[0].id")
    assert upstream.requests == []


def test_item_ids_at_the_limit_are_stored(http):
    long_id = "msg_" + "a" * 124
    answer = create(http, input=[{"role": "user", "content": "hi", "id": long_id}])
    assert answer.status_code == 200, answer.text
    items = http.get(f"/responses/{answer.json()['id']}/input_items").json()
    assert items["data"][0]["id"] == long_id


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"type": "reasoning", "summary": ["thinking"]}, "input[0].summary[0]"),
        ({"type": "reasoning", "summary": [7]}, "input[0].summary[0]"),
        ({"type": "reasoning", "summary": [{"type": "summary_text"}]}, "input[0].summary[0].text"),
        ({"type": "reasoning", "summary": [], "content": [None]}, "input[0].content[0]"),
        ({"type": "reasoning", "summary": [], "content": [["x"]]}, "input[0].content[0]"),
    ],
)
def test_reasoning_items_with_parts_that_are_not_objects_are_400(http, item, param):
    refused(create(http, input=[item, {"role": "user", "content": "hi"}]), param=param)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.pdf", "gopher://x", "javascript:x"])
def test_file_urls_other_than_http_and_data_are_400(http, upstream, url):
    part = {"type": "input_file", "file_url": url}
    refused(create(http, input=[{"role": "user", "content": [part]}]), param="input[0].content[0].file_url")
    image = {"type": "input_image", "image_url": url}
    refused(create(http, input=[{"role": "user", "content": [image]}]), param="input[0].content[0].image_url")
    assert upstream.requests == []
