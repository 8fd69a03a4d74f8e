"""API keys, projects and limits: nobody reads another project's responses."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from continuo.api.app import create_app
from continuo.config import load_config
from continuo.core.keys import hash_key
from tests.support.configs import write_config
from tests.support.fake_chat import Reply
from tests.support.servers import ServerThread
from tests.support.waits import wait_until


def cli(config: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "continuo", "keys", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


EPSILON_KEY = "sk-epsilon-declared-by-hash"
GAMMA = (
    '[[keys]]\nproject = "gamma"\nenv = "CONTINUO_TEST_GAMMA_KEY"\n\n'
    f'[[keys]]\nproject = "epsilon"\nhash = "{hash_key(EPSILON_KEY)}"\n'
)


def auth_config(tmp: Path, upstream_url: str, extra: str = "") -> Path:
    return write_config(
        tmp / "auth.toml", database_url=f"sqlite:///{tmp / 'auth.db'}", upstream_url=upstream_url, extra=GAMMA + extra
    )


@pytest.fixture(scope="module")
def keyed(upstream, tmp_path_factory) -> Iterator[tuple[ServerThread, Path, str, str]]:
    tmp = tmp_path_factory.mktemp("auth")
    config_path = auth_config(tmp, upstream.url)
    alpha = cli(config_path, "create", "--project", "alpha").strip()
    beta = cli(config_path, "create", "--project", "beta").strip()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTINUO_TEST_GAMMA_KEY", "sk-gamma-from-env")
        server = ServerThread(create_app(load_config(config_path))).start()
    yield server, config_path, alpha, beta
    server.stop()


def sdk(server: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


def test_keys_cli_creates_lists_and_never_prints_keys(keyed):
    _, config_path, alpha, beta = keyed
    assert alpha.startswith("sk-") and beta.startswith("sk-") and alpha != beta
    lines = cli(config_path, "list").splitlines()
    assert len(lines) == 2
    assert all(line.startswith("key_") for line in lines)
    assert sorted(line.split()[1] for line in lines) == ["alpha", "beta"]
    listing = "\n".join(lines)
    assert alpha not in listing and beta not in listing
    # Read in another process: closing a plain file handle on a SQLite database drops the
    # locks SQLite holds on it in this process (where the server runs).
    files = [str(config_path.parent / name) for name in ("auth.db", "auth.db-wal")]
    read = (
        "import os, sys\n"
        "sys.stdout.buffer.write(b''.join(open(f, 'rb').read() for f in sys.argv[1:] if os.path.exists(f)))"
    )
    stored = subprocess.run([sys.executable, "-c", read, *files], capture_output=True, check=True).stdout
    assert b"api_keys" in stored
    assert alpha.encode() not in stored and beta.encode() not in stored


def test_missing_and_wrong_keys_are_401(keyed):
    server, *_ = keyed
    answer = httpx.post(f"{server.url}/v1/responses", json={"model": "m", "input": "x"})
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as error:
        sdk(server, "sk-wrong").responses.create(model="m", input="x")
    assert error.value.body["code"] == "invalid_api_key"
    assert httpx.get(f"{server.url}/v1/models").status_code == 401
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_keys_declared_in_the_config(keyed):
    server, *_ = keyed
    by_env = sdk(server, "sk-gamma-from-env").responses.create(model="m", input="hi")
    assert by_env.output_text == "echo: hi"
    by_hash = sdk(server, EPSILON_KEY).responses.create(model="m", input="hi")
    # Different projects: neither sees the other's response.
    with pytest.raises(openai.NotFoundError):
        sdk(server, EPSILON_KEY).responses.retrieve(by_env.id)
    assert sdk(server, EPSILON_KEY).responses.retrieve(by_hash.id) == by_hash


def test_other_projects_get_exactly_the_unknown_id_answers(keyed, upstream):
    server, _, alpha, beta = keyed
    owner, stranger = sdk(server, alpha), sdk(server, beta)
    upstream.script(Reply(text="bg"))
    mine = owner.responses.create(model="m", input="secret")
    background = owner.responses.create(model="m", input="bg", background=True)
    wait_until(lambda: owner.responses.retrieve(background.id).status == "completed")
    unknown = "resp_" + "0" * 48

    def answer(method: str, path: str, key: str, **kw) -> tuple[int, dict]:
        reply = httpx.request(method, f"{server.url}/v1{path}", headers={"authorization": f"Bearer {key}"}, **kw)
        return reply.status_code, reply.json()

    for target in (mine.id, background.id):
        for method, template, kw in (
            ("GET", "/responses/{}", {}),
            ("GET", "/responses/{}?stream=true", {}),
            ("DELETE", "/responses/{}", {}),
            ("POST", "/responses/{}/cancel", {}),
            ("GET", "/responses/{}/input_items", {}),
        ):
            theirs = answer(method, template.format(target), beta, **kw)
            nobody = answer(method, template.format(unknown), beta, **kw)
            assert theirs[0] == nobody[0] == 404
            assert theirs[1] == {
                "error": {**nobody[1]["error"], "message": nobody[1]["error"]["message"].replace(unknown, target)}
            }
        chained = answer("POST", "/responses", beta, json={"model": "m", "input": "x", "previous_response_id": target})
        nothing = answer("POST", "/responses", beta, json={"model": "m", "input": "x", "previous_response_id": unknown})
        assert chained[0] == nothing[0] == 400
        assert chained[1]["error"]["code"] == nothing[1]["error"]["code"] == "previous_response_not_found"
    referenced = answer(
        "POST", "/responses", beta, json={"model": "m", "input": [{"type": "item_reference", "id": mine.output[0].id}]}
    )
    assert referenced[0] == 400 and referenced[1]["error"]["code"] == "item_not_found"
    # Still there, untouched, for its owner.
    assert owner.responses.retrieve(mine.id) == mine
    assert stranger.responses.create(model="m", input="own").status == "completed"


def test_revoked_key_is_refused_within_a_second(keyed):
    server, config_path, *_ = keyed
    key = cli(config_path, "create", "--project", "delta").strip()
    client = sdk(server, key)
    assert client.responses.create(model="m", input="ok").status == "completed"
    (key_id,) = [line.split()[0] for line in cli(config_path, "list").splitlines() if line.split()[1] == "delta"]
    cli(config_path, "revoke", key_id)
    assert next(line for line in cli(config_path, "list").splitlines() if line.startswith(key_id)).endswith("revoked")

    def refused() -> bool:
        try:
            client.models.list()
        except openai.AuthenticationError:
            return True
        return False

    wait_until(refused, timeout=3)


def test_logs_carry_no_key_and_no_prompt(keyed, caplog):
    server, _, alpha, _ = keyed
    caplog.set_level(logging.DEBUG)
    sdk(server, alpha).responses.create(model="m", input="very private prompt")
    with pytest.raises(openai.AuthenticationError):
        sdk(server, "sk-leaked-guess").models.list()
    # The SDK in this process logs its own request headers at DEBUG; only the server's
    # records count (its upstream client is httpx/httpcore, the SDK's httpx2/httpcore2).
    client_side = ("openai", "httpx2", "httpcore2")
    text = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(client_side))
    assert "refused GET /v1/models: unknown or revoked API key" in text
    assert alpha not in text and "sk-leaked-guess" not in text and "very private prompt" not in text


@pytest.fixture(scope="module")
def limited(upstream, tmp_path_factory) -> Iterator[tuple[ServerThread, str]]:
    tmp = tmp_path_factory.mktemp("limits")
    extra = """
[limits]
requests_per_minute = 6
concurrent_streams = 1
max_input_items = 5
"""
    config_path = auth_config(tmp, upstream.url, extra)
    key = cli(config_path, "create", "--project", "limited").strip()
    with pytest.MonkeyPatch.context() as patch:
        # A [[keys]] entry whose variable is unset refuses to start.
        patch.setenv("CONTINUO_TEST_GAMMA_KEY", "sk-gamma-from-env")
        server = ServerThread(create_app(load_config(config_path))).start()
    yield server, key
    server.stop()


def test_limits(limited, upstream):
    server, key = limited
    client = sdk(server, key)
    with pytest.raises(openai.BadRequestError) as too_many_items:
        client.responses.create(model="m", input=[{"role": "user", "content": str(i)} for i in range(6)])
    assert too_many_items.value.body["param"] == "input"
    upstream.script(Reply(text="s" * 200, chunk_size=2, delay=0.02))
    stream = client.responses.create(model="m", input="long", stream=True)
    next(iter(stream))
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model="m", input="second", stream=True)
    stream.close()
    statuses = [httpx.get(f"{server.url}/v1/models", headers={"authorization": f"Bearer {key}"}) for _ in range(8)]
    limited_answers = [a for a in statuses if a.status_code == 429]
    assert limited_answers, [a.status_code for a in statuses]
    assert int(limited_answers[0].headers["retry-after"]) >= 1
    assert limited_answers[0].json()["error"]["code"] == "rate_limit_exceeded"


def fetch_config(tmp: Path, upstream_url: str, allow_private: bool) -> Path:
    return write_config(
        tmp / "fetch.toml",
        database_url=f"sqlite:///{tmp / 'fetch.db'}",
        upstream_url=upstream_url,
        provider_options="fetch_remote_content = true",
        extra=f"[security]\nallow_private_urls = {str(allow_private).lower()}",
    )


@pytest.mark.parametrize("allow_private", [False, True])
def test_remote_content_fetch_refuses_private_addresses(upstream, tmp_path, allow_private):
    server = ServerThread(create_app(load_config(fetch_config(tmp_path, upstream.url, allow_private)))).start()
    try:
        client = sdk(server, "unused")
        image = {"type": "input_image", "image_url": f"{upstream.url}/files/cat.png"}
        body = [{"role": "user", "content": [{"type": "input_text", "text": "see"}, image]}]
        if allow_private:
            response = client.responses.create(model="m", input=body)
            sent = upstream.last["messages"][0]["content"][1]["image_url"]["url"]
            assert sent.startswith("data:image/png;base64,")
            # What is stored is what the client sent: the URL, not the download.
            stored = client.responses.input_items.list(response.id).data[0]
            assert stored.content[1].image_url == image["image_url"]
        else:
            with pytest.raises(openai.BadRequestError) as error:
                client.responses.create(model="m", input=body)
            assert error.value.body["param"] == "input[0].content[1].image_url"
            assert "private" in error.value.body["message"]
            assert upstream.requests == []
    finally:
        server.stop()


def _handshake(server: ServerThread, path: str, key: str | None) -> int:
    """The HTTP status a WebSocket handshake gets (101 when it is accepted)."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with connect(f"ws://127.0.0.1:{server.port}{path}", additional_headers=headers, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.parametrize("path", ["/v1/responses", "/anything"])
def test_websockets_go_through_the_key_check(keyed, path):
    server, _, alpha, _ = keyed
    assert _handshake(server, path, None) == 401
    assert _handshake(server, path, "sk-wrong") == 401
    # A good key passes the check; only /v1/responses has a WebSocket route (WebSocket mode).
    assert _handshake(server, path, alpha) == (101 if path == "/v1/responses" else 403)


def test_a_socket_works_in_its_key_project(keyed, upstream):
    from tests.support.sockets import open_socket

    server, _, alpha, beta = keyed
    with open_socket(server.url, key=alpha) as ws:
        ws.create(model="gpt-test", input="alpha's secret")
        made = ws.response()[-1]["response"]
    assert sdk(server, alpha).responses.retrieve(made["id"]).id == made["id"]
    with pytest.raises(openai.NotFoundError):
        sdk(server, beta).responses.retrieve(made["id"])
    # Nor can another project's socket continue it.
    with open_socket(server.url, key=beta) as ws:
        ws.create(model="gpt-test", input="tell me", previous_response_id=made["id"])
        assert ws.error()["error"]["code"] == "previous_response_not_found"
