"""[[models]] routes: which provider, of which type, under which upstream name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import parse_config
from tests.support.fake_chat import FakeChatUpstream
from tests.support.fake_responses import FakeResponsesUpstream
from tests.support.fake_responses import Reply as ResponsesReply
from tests.support.servers import ServerThread


@pytest.fixture(scope="module")
def rupstream() -> Iterator[FakeResponsesUpstream]:
    fake = FakeResponsesUpstream()
    server = ServerThread(fake.app).start()
    fake.url = server.url
    yield fake
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_rupstream(rupstream: FakeResponsesUpstream) -> None:
    rupstream.reset()


def routed_server(chat_url: str, responses_url: str, db: Path, models: list[dict[str, Any]]) -> ServerThread:
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{db}"},
            "providers": [
                {"name": "chat", "type": "chat_completions", "base_url": f"{chat_url}/v1", "max_retries": 0},
                {"name": "resp", "type": "responses", "base_url": f"{responses_url}/v1", "max_retries": 0},
            ],
            "models": models,
        }
    )
    return ServerThread(create_app(config)).start()


ROUTES = [
    {"name": "small", "provider": "chat", "upstream_model": "fake-small"},
    {"name": "big", "provider": "resp", "upstream_model": "up-big"},
    {"name": "*", "provider": "resp"},
]


@pytest.fixture(scope="module")
def routed(
    upstream: FakeChatUpstream, rupstream: FakeResponsesUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    db = tmp_path_factory.mktemp("routing") / "c.db"
    running = routed_server(upstream.url, rupstream.url, db, ROUTES)  # type: ignore[attr-defined]
    yield running
    running.stop()


@pytest.fixture(scope="module")
def strict(
    upstream: FakeChatUpstream, rupstream: FakeResponsesUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerThread]:
    """The same routes without a ``*`` catch-all."""
    db = tmp_path_factory.mktemp("routing-strict") / "c.db"
    running = routed_server(upstream.url, rupstream.url, db, ROUTES[:2])  # type: ignore[attr-defined]
    yield running
    running.stop()


def sdk(server: ServerThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-client", max_retries=0)


def test_models_lists_the_client_names(routed):
    with sdk(routed) as client:
        assert sorted(model.id for model in client.models.list()) == ["big", "small"]
        assert client.models.retrieve("small").id == "small"
        # The "*" route serves any name, so any name is a model here.
        assert client.models.retrieve("org/any-model").id == "org/any-model"


def test_each_name_goes_to_its_provider_under_its_upstream_name(routed, upstream, rupstream):
    with sdk(routed) as client:
        small = client.responses.create(model="small", input="to chat")
        assert [r["model"] for r in upstream.requests] == ["fake-small"]
        assert rupstream.requests == []
        big = client.responses.create(model="big", input="to responses")
        assert [r["model"] for r in rupstream.requests] == ["up-big"]
        other = client.responses.create(model="some-other-model", input="to the catch-all")
        assert [r["model"] for r in rupstream.requests] == ["up-big", "some-other-model"]
    assert len(upstream.requests) == 1
    # Clients see their own names back, never the upstream's.
    assert (small.model, big.model, other.model) == ("small", "big", "some-other-model")
    assert small.output_text == "echo: to chat"
    assert big.output_text == "echo: to responses"


def test_a_chain_may_change_provider(routed, upstream, rupstream):
    """The context lives in Continuo, so a chain started on the chat provider goes on, whole,
    on the responses provider."""
    rupstream.script(ResponsesReply(text="from responses"))
    with sdk(routed) as client:
        first = client.responses.create(model="small", input="hello", instructions="chat rules")
        second = client.responses.create(model="big", input="again", previous_response_id=first.id)
    assert second.output_text == "from responses"
    sent = rupstream.last
    assert "instructions" not in sent and "previous_response_id" not in sent and sent["store"] is False
    [answer] = first.output
    assert sent["input"] == [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hello"}]},
        answer.model_dump(mode="json", exclude_none=True),
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "again"}]},
    ]


def test_unrouted_name_without_catch_all_is_400(strict, upstream, rupstream):
    with sdk(strict) as client:
        assert sorted(model.id for model in client.models.list()) == ["big", "small"]
        with pytest.raises(openai.BadRequestError) as error:
            client.responses.create(model="nowhere", input="x")
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("nowhere")
        # A background response is refused at create, not queued to fail later.
        with pytest.raises(openai.BadRequestError) as queued:
            client.responses.create(model="nowhere", input="x", background=True)
        assert queued.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert error.value.status_code == 400
    body = error.value.body
    assert body["type"] == "invalid_request_error"
    assert (body["param"], body["code"]) == ("model", "model_not_found")
    assert "nowhere" in body["message"]
    assert upstream.requests == [] and rupstream.requests == []
