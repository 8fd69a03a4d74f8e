"""Requests generated from OpenAI's create-request schema, and targeted mutations of a
valid one (nesting, big numbers, NUL and control characters, long ids, parts of the wrong
type, URL schemes), on SQLite and on PostgreSQL: never a 5xx, every error OpenAI-shaped.

Derandomized, so a failure reproduces run after run. ``CONTINUO_FUZZ_EXAMPLES`` sets the
examples per test and database (default 1000; 3400 makes more than 10,000 requests per database).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from continuo.api.app import create_app
from tests.support.configs import make_config
from tests.support.schema_strategy import ANY_JSON, SchemaStrategies
from tests.support.servers import ServerThread

EXAMPLES = int(os.environ.get("CONTINUO_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_server(
    request: pytest.FixtureRequest, upstream: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    config = make_config(upstream.url, tmp_path_factory.mktemp("fuzz") / "c.db")
    if request.param == "postgres":
        config.database.url = request.getfixturevalue("pg_url")
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(fuzz_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{fuzz_server.url}/v1", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def stored_id(http: httpx.Client) -> str:
    answer = http.post("/responses", json={"model": "gpt-test", "input": "kept", "background": True})
    response_id: str = answer.json()["id"]
    return response_id


def check(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("application/json"), answer.headers
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"], error


def post(http: httpx.Client, text: str) -> None:
    check(http.post("/responses", content=text.encode(), headers={"content-type": "application/json"}))


# -- generated from the schema -------------------------------------------------------------

SCHEMA_BODIES = SchemaStrategies("openai-openapi.json").for_component("CreateResponse")


@FUZZ
@given(body=SCHEMA_BODIES, routable=st.booleans())
def _schema_case(http: httpx.Client, body: dict[str, Any], routable: bool) -> None:
    if routable:  # half of them get past the first checks, to reach deeper ones
        body.setdefault("model", "gpt-test")
        body.setdefault("input", "hi")
    post(http, json.dumps(body))


def test_requests_generated_from_the_schema(http):
    _schema_case(http)


# -- targeted mutations ----------------------------------------------------------------------

DEEP = "__deep__"
INT_FIELDS = ["max_output_tokens", "max_tool_calls", "top_logprobs", "seed", "top_k", "temperature", "top_p"]
ID_TEXT = st.one_of(
    st.text(st.characters(max_codepoint=0x1F), min_size=1, max_size=8).map(lambda s: "resp_" + s),
    st.integers(65, 400).map(lambda n: "resp_" + "a" * n),
    st.text(min_size=1, max_size=80),
)
BIG_NUMBERS = st.one_of(
    st.integers(2**31 - 2, 2**70),
    st.integers(-(2**70), -(2**31)),
    st.sampled_from([1e20, -1e30, 1.5, 2.0**64, 1e308, -0.0]),
)
SCHEMES = st.sampled_from(["file:///etc/passwd", "ftp://h/x", "gopher://h", "javascript:1", "HTTP://h/x", "data:,x"])


def _parts() -> st.SearchStrategy[Any]:
    part_types = st.sampled_from(["input_text", "input_image", "input_file", "output_text", "refusal", "x"])
    part = st.fixed_dictionaries(
        {"type": part_types},
        optional={
            "text": ANY_JSON,
            "image_url": SCHEMES | ANY_JSON,
            "file_url": SCHEMES | ANY_JSON,
            "file_data": ANY_JSON,
            "file_id": ANY_JSON,
        },
    )
    return st.lists(part | ANY_JSON, max_size=3)


MUTATIONS = st.one_of(
    # nesting, in a known field, an unknown one, or an item
    st.tuples(
        st.just("deep"),
        st.sampled_from(["tools", "text", "metadata", "input", "client_metadata"]),
        st.integers(100, 1015),
    ),
    st.tuples(st.just("number"), st.sampled_from([*INT_FIELDS, "client_metadata"]), BIG_NUMBERS),
    st.tuples(st.just("previous_response_id"), st.none(), ID_TEXT),
    st.tuples(st.just("item_id"), st.sampled_from(["message", "item_reference", "function_call"]), ID_TEXT),
    st.tuples(st.just("parts"), st.sampled_from(["user", "assistant", "developer"]), _parts()),
    st.tuples(st.just("reasoning"), st.sampled_from(["summary", "content"]), st.lists(ANY_JSON, max_size=3)),
    st.tuples(st.just("output"), st.none(), _parts() | ANY_JSON),
)


def mutated(kind: str, where: Any, value: Any) -> tuple[dict[str, Any], int]:
    body: dict[str, Any] = {"model": "gpt-test", "input": "hi"}
    depth = 0
    if kind == "deep":
        depth = value
        if where == "tools":
            body["tools"] = [{"type": "function", "name": "f", "parameters": {"x": DEEP}}]
        elif where == "text":
            body["text"] = {"format": {"type": "json_schema", "name": "n", "schema": {"x": DEEP}}}
        elif where == "input":
            body["input"] = [{"role": "user", "content": "hi", "x": DEEP}]
        else:
            body[where] = DEEP
    elif kind == "number":
        body[where] = value if where != "client_metadata" else {"n": value}
    elif kind == "previous_response_id":
        body["previous_response_id"] = value
    elif kind == "item_id":
        item = {
            "message": {"role": "user", "content": "hi", "id": value},
            "item_reference": {"type": "item_reference", "id": value},
            "function_call": {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}", "id": value},
        }[where]
        body["input"] = [item, {"role": "user", "content": "hi"}]
    elif kind == "parts":
        body["input"] = [{"role": where, "content": value}, {"role": "user", "content": "hi"}]
    elif kind == "reasoning":
        body["input"] = [{"type": "reasoning", "summary": [], where: value}, {"role": "user", "content": "hi"}]
    else:
        body["input"] = [
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": value},
        ]
    return body, depth


@FUZZ
@given(mutation=MUTATIONS, mode=st.sampled_from([{}, {"stream": True}, {"background": True}]))
def _mutation_case(http: httpx.Client, mutation: tuple[str, Any, Any], mode: dict[str, Any]) -> None:
    body, depth = mutated(*mutation)
    text = json.dumps({**body, **mode})
    if depth:
        text = text.replace(f'"{DEEP}"', '{"x": [' * (depth // 2) + "1" + "]}" * (depth // 2))
    post(http, text)


def test_targeted_mutations(http):
    _mutation_case(http)


@FUZZ
@given(
    method=st.sampled_from(["GET", "DELETE", "POST"]),
    suffix=st.sampled_from(["", "/input_items", "/cancel"]),
    response_id=ID_TEXT,
    starting_after=st.one_of(st.none(), st.integers(-(2**70), 2**70).map(str), st.text(max_size=6)),
)
def _path_case(
    http: httpx.Client, stored: str, method: str, suffix: str, response_id: str, starting_after: Any
) -> None:
    params = {"stream": "true", "starting_after": starting_after} if starting_after is not None else {}
    path = "/responses/" + quote(response_id, safe="") + suffix
    check(http.request(method, path, params=params))
    if method == "GET" and not suffix and starting_after is not None:
        check(http.get(f"/responses/{stored}", params=params))


def test_paths_ids_and_starting_after(http, stored_id):
    _path_case(http, stored_id)
