"""Thousands of malformed requests: only 4xx (or a valid answer), always OpenAI-shaped,
and nothing already stored changes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELDS = [
    "model",
    "input",
    "instructions",
    "previous_response_id",
    "store",
    "stream",
    "background",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "text",
    "reasoning",
    "metadata",
    "max_output_tokens",
    "temperature",
    "top_p",
    "top_logprobs",
    "truncation",
    "include",
    "seed",
    "stop",
    "top_k",
    "conversation",
    "user",
]
ITEM_KEYS = ["type", "role", "content", "id", "call_id", "name", "arguments", "output", "summary", "image_url", "text"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
items = st.dictionaries(
    st.sampled_from(ITEM_KEYS),
    json_values | st.sampled_from(["message", "user", "function_call", "input_text", "reasoning", "item_reference"]),
    max_size=5,
)
bodies = st.fixed_dictionaries(
    {"model": st.just("gpt-test"), "input": st.just("hi")},
    optional={field: json_values for field in FIELDS if field not in ("model", "input")},
) | st.fixed_dictionaries({"model": st.just("gpt-test"), "input": st.lists(items | json_values, max_size=4)})

# derandomize: the same examples on every run, so a failure in CI reproduces locally.
FUZZ = settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def check(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])
    if answer.status_code < 300:
        assert answer.headers["content-type"].startswith(("application/json", "text/event-stream"))
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


@pytest.fixture(scope="module")
def http(server) -> Any:
    with httpx.Client(base_url=f"{server.url}/v1", timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stored(http) -> dict[str, Any]:
    first = http.post("/responses", json={"model": "gpt-test", "input": "kept one"}).json()
    second = http.post(
        "/responses", json={"model": "gpt-test", "input": "kept two", "previous_response_id": first["id"]}
    ).json()
    return {
        "id": second["id"],
        "response": http.get(f"/responses/{second['id']}").json(),
        "items": http.get(f"/responses/{second['id']}/input_items").json(),
        "first": http.get(f"/responses/{first['id']}").json(),
    }


def test_fuzz_json_bodies(http, stored):
    @FUZZ
    @given(bodies)
    def run(body: dict[str, Any]) -> None:
        check(http.post("/responses", content=json.dumps(body)))

    run()


def test_fuzz_raw_bodies(http, stored):
    @FUZZ
    @given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
    def run(raw: bytes) -> None:
        check(http.post("/responses", content=raw, headers={"content-type": "application/json"}))

    run()


# KNOWN BUG, for the lead (api/app.py): Starlette's redirect_slashes answers
# "/v1/responses/?..." with a bodyless 307 instead of an OpenAI-shaped 404. Remove this
# marker once Starlette(..., redirect_slashes=False) (or a route for it) is in.
@pytest.mark.wire_exempt("json-answer")
def test_fuzz_paths_and_queries(http, stored):
    printable = st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc"))
    ids = st.text(printable, max_size=20) | st.just(stored["id"])
    queries = st.dictionaries(
        st.sampled_from(["limit", "order", "after", "stream", "starting_after", "include"]),
        st.text(printable, max_size=6),
        max_size=3,
    )

    @FUZZ
    @given(st.sampled_from(["GET", "DELETE", "POST"]), st.sampled_from(["", "/input_items", "/cancel"]), ids, queries)
    def run(method: str, suffix: str, response_id: str, query: dict[str, str]) -> None:
        if method == "DELETE" and response_id == stored["id"]:
            return  # deleting is allowed; the point is what malformed calls do
        path = "/responses/" + httpx.URL(response_id).raw_path.decode().lstrip("/") + suffix
        check(http.request(method, path, params=query))

    run()


def test_stored_data_is_unchanged(http, stored):
    assert http.get(f"/responses/{stored['id']}").json() == stored["response"]
    assert http.get(f"/responses/{stored['id']}/input_items").json() == stored["items"]
    assert http.get(f"/responses/{stored['first']['id']}").json() == stored["first"]
