"""Bad input and failing upstreams: OpenAI-shaped JSON errors with the right status."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import openai
import pytest

from continuo.api.app import create_app
from tests.support.configs import make_config
from tests.support.fake_chat import Reply
from tests.support.servers import ServerThread
from tests.support.waits import wait_until


def post(server, content: bytes | str, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/responses",
        content=content,
        headers={"content-type": "application/json", **(headers or {})},
    )


def assert_error(answer: httpx.Response, status: int, param: str | None = None) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def test_malformed_json(server):
    assert_error(post(server, b"{not json"), 400)


def test_body_not_an_object(server):
    assert_error(post(server, b"[1, 2]"), 400)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "hi"}, "model"),
        ({"model": 5, "input": "hi"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": 5}, "input"),
        ({"model": "m", "input": "hi", "temperature": "hot"}, "temperature"),
        ({"model": "m", "input": "hi", "temperature": 3}, "temperature"),
        ({"model": "m", "input": "hi", "top_p": -1}, "top_p"),
        ({"model": "m", "input": "hi", "presence_penalty": 2.5}, "presence_penalty"),
        ({"model": "m", "input": "hi", "frequency_penalty": -3}, "frequency_penalty"),
        ({"model": "m", "input": "hi", "frequency_penalty": "lots"}, "frequency_penalty"),
        ({"model": "m", "input": "hi", "max_output_tokens": "many"}, "max_output_tokens"),
        ({"model": "m", "input": "hi", "stream": "yes"}, "stream"),
        ({"model": "m", "input": "hi", "store": 1}, "store"),
        ({"model": "m", "input": "hi", "metadata": []}, "metadata"),
        ({"model": "m", "input": "hi", "tools": {}}, "tools"),
        ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0].name"),
        ({"model": "m", "input": "hi", "tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
        ({"model": "m", "input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
        ({"model": "m", "input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"model": "m", "input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
        ({"model": "m", "input": "hi", "reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"model": "m", "input": "hi", "previous_response_id": 7}, "previous_response_id"),
        ({"model": "m", "input": [{"type": "telepathy"}]}, "input[0].type"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"role": "user"}]}, "input[0].content"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "input[0].content[0].type"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}]},
            "input[0].content[0].image_url",
        ),
        ({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id"),
        ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output"),
        ({"model": "m", "input": ["just a string"]}, "input[0]"),
    ],
)
def test_invalid_requests_name_the_param(server, upstream, body, param):
    error = assert_error(httpx.post(f"{server.url}/v1/responses", json=body), 400, param)
    assert error["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_body_too_large(server):
    big = b'{"model": "m", "input": "' + b"x" * (3 * 1024 * 1024) + b'"}'
    assert_error(post(server, big), 413)


def test_body_too_large_without_content_length(server):
    def chunks():
        yield b'{"model": "m", "input": "'
        for _ in range(300):
            yield b"x" * 10_000
        yield b'"}'

    answer = httpx.post(f"{server.url}/v1/responses", content=chunks(), headers={"content-type": "application/json"})
    assert_error(answer, 413)


def test_unknown_route_and_method(server):
    assert_error(httpx.get(f"{server.url}/v1/nothing"), 404)
    assert_error(httpx.put(f"{server.url}/v1/responses"), 405)


def test_unknown_id_is_404(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.responses.retrieve("resp_unknown")
    assert error.value.body["type"] == "invalid_request_error"


def test_stream_of_foreground_response_is_400(client, server):
    response = client.responses.create(model="gpt-test", input="x")
    assert_error(httpx.get(f"{server.url}/v1/responses/{response.id}?stream=true"), 400, "stream")
    assert_error(httpx.get(f"{server.url}/v1/responses/resp_nope?stream=true"), 404)


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_5xx_is_502_naming_provider(client, upstream, stream):
    upstream.script(Reply(status=500, body=b'{"error": {"message": "GPU on fire"}}'))
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="gpt-test", input="x", stream=stream)
    assert error.value.status_code == 502
    assert "fake" in error.value.body["message"] and "GPU on fire" in error.value.body["message"]
    assert "sk-upstream-secret" not in str(error.value.body)


def test_upstream_html_page_is_502(client, upstream):
    upstream.script(Reply(status=503, body=b"<html><body>Maintenance</body></html>", content_type="text/html"))
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="gpt-test", input="x")
    assert error.value.status_code == 502
    assert "HTML" in error.value.body["message"]


def test_upstream_200_with_html_is_502(client, upstream):
    upstream.script(Reply(status=200, body=b"<html>oops</html>", content_type="text/html"))
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="gpt-test", input="x")
    assert error.value.status_code == 502


def test_upstream_200_with_non_json_is_502(client, upstream):
    upstream.script(Reply(status=200, body=b"plain words", content_type="text/plain"))
    with pytest.raises(openai.APIStatusError) as error:
        client.responses.create(model="gpt-test", input="x")
    assert error.value.status_code == 502
    assert "not JSON" in error.value.body["message"]


def test_upstream_4xx_keeps_status_and_message(client, upstream):
    upstream.script(
        Reply(status=400, body=b'{"error": {"message": "context too long", "type": "invalid_request_error"}}')
    )
    with pytest.raises(openai.BadRequestError) as error:
        client.responses.create(model="gpt-test", input="x")
    assert "context too long" in error.value.body["message"]


@pytest.fixture(scope="module")
def fragile_server(upstream, tmp_path_factory) -> Iterator[ServerThread]:
    """Continuo with a short upstream timeout, and a second provider nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    config = make_config(upstream.url, tmp_path_factory.mktemp("fragile") / "c.db")
    config.providers[0].timeout = 0.5
    config.providers.append(
        type(config.providers[0])(
            name="dead", type="chat_completions", base_url=f"http://127.0.0.1:{dead_port}/v1", max_retries=1
        )
    )
    config.models.append(type(config.models[0])(name="dead-model", provider="dead"))
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


def test_upstream_timeout_is_504(fragile_server, upstream):
    upstream.script(Reply(wait=2))
    with openai.OpenAI(base_url=f"{fragile_server.url}/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as error:
            client.responses.create(model="gpt-test", input="x")
    assert error.value.status_code == 504
    assert "fake" in error.value.body["message"]


def test_upstream_unreachable_is_502(fragile_server):
    with openai.OpenAI(base_url=f"{fragile_server.url}/v1", api_key="k", max_retries=0) as client:
        with pytest.raises(openai.APIStatusError) as error:
            client.responses.create(model="dead-model", input="x")
    assert error.value.status_code == 502
    assert "dead" in error.value.body["message"]


def test_failed_requests_store_nothing(client, upstream, server):
    before = client.responses.create(model="gpt-test", input="kept")
    upstream.script(Reply(status=500))
    with pytest.raises(openai.APIStatusError):
        client.responses.create(model="gpt-test", input="lost", previous_response_id=before.id)
    assert client.responses.retrieve(before.id).output_text == "echo: kept"
    items = client.responses.input_items.list(before.id)
    assert [i.content[0].text for i in items.data] == ["kept"]


@pytest.mark.parametrize("retries", [0, 4])
def test_connection_failures_are_retried_before_sending(tmp_path, retries, caplog):
    """An upstream that refuses connections at first (bound, not yet listening) is
    reached with max_retries; without retries the client gets a 502."""
    import threading

    from tests.support.fake_chat import FakeChatUpstream

    late = FakeChatUpstream()
    late_server = ServerThread(late.app)  # the port is bound but not listening yet
    config = make_config(late_server.url, tmp_path / "retry.db")
    config.providers[0].max_retries = retries
    continuo = ServerThread(create_app(config)).start()
    outcome: dict = {}

    def call() -> None:
        with openai.OpenAI(base_url=f"{continuo.url}/v1", api_key="k", max_retries=0) as client:
            try:
                outcome["response"] = client.responses.create(model="gpt-test", input="late")
            except openai.APIStatusError as error:
                outcome["error"] = error

    thread = threading.Thread(target=call)
    thread.start()
    if retries:  # at least one attempt was refused before the upstream listens
        wait_until(lambda: any("unreachable" in r.getMessage() for r in caplog.records))
    else:
        wait_until(lambda: outcome)
    late_server.start()
    thread.join(timeout=30)
    late_server.stop()
    continuo.stop()
    if retries:
        assert outcome["response"].output_text == "echo: late"
        assert len(late.requests) == 1  # sent once, never twice
    else:
        assert outcome["error"].status_code == 502
        assert late.requests == []


# The point: the app raises (Starlette sends the 500, then raises again for the server's log).
@pytest.mark.wire_exempt("answer")
def test_unexpected_error_in_create_is_a_json_500(server, monkeypatch):
    """``POST /v1/responses`` skips Starlette's router (api/app.py): an error nobody expected
    still leaves as an OpenAI-shaped 500 from the same outermost layer."""

    async def broken(*_args, **_kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.app.state.service, "create", broken)
    error = assert_error(post(server, b'{"model": "m", "input": "hi"}'), 500)
    assert error["type"] == "server_error"
    monkeypatch.undo()
    assert httpx.get(f"{server.url}/v1/models").status_code == 200
