"""Conversations through the openai SDK, on SQLite and PostgreSQL: every endpoint, the
``conversation`` parameter of a create, the in-progress lock, deletes, other projects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from continuo.config import load_config
from tests.support.configs import write_config
from tests.support.fake_chat import Reply
from tests.support.postgres import create_database, drop_database
from tests.support.servers import ServerThread
from tests.support.waits import wait_until

KEYS = (
    '[[keys]]\nproject = "alpha"\nenv = "CONTINUO_TEST_CONV_ALPHA"\n\n'
    '[[keys]]\nproject = "beta"\nenv = "CONTINUO_TEST_CONV_BETA"\n\n'
    "[background]\nmax_concurrent = 4\nlease_seconds = 2\npoll_seconds = 0.2\n"
)
ALPHA, BETA = "sk-conv-alpha", "sk-conv-beta"


def start(tmp: Path, upstream_url: str, database_url: str) -> ServerThread:
    config = write_config(tmp / "conv.toml", database_url=database_url, upstream_url=upstream_url, extra=KEYS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONTINUO_TEST_CONV_ALPHA", ALPHA)
        patch.setenv("CONTINUO_TEST_CONV_BETA", BETA)
        return ServerThread(create_app(load_config(config))).start()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def conv_server(request, upstream, tmp_path_factory) -> Iterator[ServerThread]:
    tmp = tmp_path_factory.mktemp(f"conv-{request.param}")
    database = f"sqlite:///{tmp / 'conv.db'}" if request.param == "sqlite" else create_database()
    server = start(tmp, upstream.url, database)
    yield server
    server.stop()
    if request.param == "postgresql":
        drop_database(database)


def sdk(server: ServerThread, key: str = ALPHA) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)


@pytest.fixture
def alpha(conv_server) -> Iterator[openai.OpenAI]:
    with sdk(conv_server) as c:
        yield c


def texts(items: Any) -> list[str]:
    out = []
    for item in items:
        content = item.content if hasattr(item, "content") else item["content"]
        part = content[0]
        out.append(part.text if hasattr(part, "text") else part["text"])
    return out


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


def sent(upstream: Any) -> list[str]:
    """The contents of the messages the model received last."""
    return [m["content"] for m in upstream.last["messages"]]


# -- the endpoints --------------------------------------------------------------------------


def test_create_retrieve_update_delete(alpha):
    conversation = alpha.conversations.create(metadata={"topic": "demo"}, items=[user("Hello!")])
    assert conversation.id.startswith("conv_") and conversation.object == "conversation"
    assert conversation.metadata == {"topic": "demo"} and isinstance(conversation.created_at, int)
    assert alpha.conversations.retrieve(conversation.id) == conversation
    updated = alpha.conversations.update(conversation.id, metadata={"topic": "project-x"})
    assert updated.metadata == {"topic": "project-x"} and updated.id == conversation.id
    assert alpha.conversations.retrieve(conversation.id).metadata == {"topic": "project-x"}
    deleted = alpha.conversations.delete(conversation.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (conversation.id, "conversation.deleted", True)
    with pytest.raises(openai.NotFoundError) as error:
        alpha.conversations.retrieve(conversation.id)
    assert error.value.body["message"] == f"Conversation with id '{conversation.id}' not found."  # type: ignore[index]


def test_empty_conversation_has_empty_metadata(alpha):
    conversation = alpha.conversations.create()
    assert conversation.metadata == {}
    page = alpha.conversations.items.list(conversation.id)
    assert page.data == [] and page.has_more is False


def test_items_create_list_retrieve_delete(alpha):
    conversation = alpha.conversations.create(items=[user("one")])
    added = alpha.conversations.items.create(
        conversation.id,
        items=[user("two"), {"type": "message", "role": "assistant", "content": "three"}],
    )
    assert added.object == "list" and texts(added.data) == ["two", "three"]
    assert added.first_id == added.data[0].id and added.last_id == added.data[1].id
    ascending = alpha.conversations.items.list(conversation.id, order="asc")
    assert texts(ascending.data) == ["one", "two", "three"]
    assert texts(alpha.conversations.items.list(conversation.id).data) == ["three", "two", "one"]  # desc by default
    item = alpha.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    assert item.id == added.data[0].id and item.role == "user" and item.status == "completed"
    left = alpha.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)
    assert left.id == conversation.id and left.object == "conversation"
    assert texts(alpha.conversations.items.list(conversation.id, order="asc").data) == ["one", "three"]
    with pytest.raises(openai.NotFoundError):
        alpha.conversations.items.retrieve(added.data[0].id, conversation_id=conversation.id)
    with pytest.raises(openai.NotFoundError):
        alpha.conversations.items.delete(added.data[0].id, conversation_id=conversation.id)


def test_items_page_with_cursors(alpha):
    conversation = alpha.conversations.create(items=[user(f"m{i}") for i in range(20)])
    alpha.conversations.items.create(conversation.id, items=[user(f"m{i}") for i in range(20, 25)])
    first = alpha.conversations.items.list(conversation.id, order="asc", limit=10)
    assert texts(first.data) == [f"m{i}" for i in range(10)] and first.has_more
    second = alpha.conversations.items.list(conversation.id, order="asc", limit=10, after=first.last_id)
    assert texts(second.data) == [f"m{i}" for i in range(10, 20)] and second.has_more
    every = [item for item in alpha.conversations.items.list(conversation.id, order="desc", limit=7)]
    assert texts(every) == [f"m{i}" for i in reversed(range(25))]
    with pytest.raises(openai.BadRequestError) as error:
        alpha.conversations.items.list(conversation.id, after="msg_nope")
    assert error.value.body["param"] == "after"  # type: ignore[index]


def test_invalid_requests(alpha):
    with pytest.raises(openai.BadRequestError) as error:
        alpha.conversations.create(items=[user("x")] * 21)
    assert error.value.body["code"] == "array_above_max_length"  # type: ignore[index]
    assert error.value.body["param"] == "items"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as error:
        alpha.conversations.create(items=[{"type": "message", "role": "robot", "content": "x"}])
    assert error.value.body["param"] == "items[0].role"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as error:
        alpha.conversations.create(metadata={"k": 1})  # type: ignore[dict-item]
    assert error.value.body["param"] == "metadata.k"  # type: ignore[index]
    conversation = alpha.conversations.create()
    assert alpha.conversations.items.create(conversation.id, items=[]).data == []
    with pytest.raises(openai.BadRequestError) as error:
        alpha.post(f"/conversations/{conversation.id}/items", body={}, cast_to=object)
    assert error.value.body["code"] == "missing_required_parameter"  # type: ignore[index]


def test_another_project_gets_the_same_404_as_an_unknown_id(conv_server, alpha):
    conversation = alpha.conversations.create(items=[user("secret")])
    item = alpha.conversations.items.list(conversation.id).data[0]
    with sdk(conv_server, BETA) as beta:
        for cid in (conversation.id, "conv_unknown"):
            calls = [
                lambda cid=cid: beta.conversations.retrieve(cid),
                lambda cid=cid: beta.conversations.update(cid, metadata={"a": "b"}),
                lambda cid=cid: beta.conversations.items.list(cid),
                lambda cid=cid: beta.conversations.items.create(cid, items=[user("x")]),
                lambda cid=cid: beta.conversations.items.retrieve(item.id, conversation_id=cid),
                lambda cid=cid: beta.conversations.items.delete(item.id, conversation_id=cid),
                lambda cid=cid: beta.conversations.delete(cid),
            ]
            for call in calls:
                with pytest.raises(openai.NotFoundError) as error:
                    call()
                assert error.value.body["message"] == f"Conversation with id '{cid}' not found."  # type: ignore[index]
        with pytest.raises(openai.NotFoundError) as error:
            beta.responses.create(model="m", input="x", conversation=conversation.id)
        assert error.value.body["param"] == "conversation"  # type: ignore[index]
    assert texts(alpha.conversations.items.list(conversation.id).data) == ["secret"]


# -- the conversation parameter ----------------------------------------------------------------


def test_model_sees_the_conversation_and_the_response_is_appended(alpha, upstream):
    conversation = alpha.conversations.create(items=[user("My name is Ada.")])
    first = alpha.responses.create(model="m", input="What is my name?", conversation=conversation.id)
    assert first.conversation is not None and first.conversation.id == conversation.id
    assert sent(upstream) == ["My name is Ada.", "What is my name?"]
    items = alpha.conversations.items.list(conversation.id, order="asc").data
    assert texts(items) == ["My name is Ada.", "What is my name?", "echo: What is my name?"]
    # The conversation's items are the response's own items (same ids), not new ones.
    assert items[2].id == first.output[0].id
    assert items[1].id == alpha.responses.input_items.list(first.id).data[0].id
    second = alpha.responses.create(model="m", input="Again?", conversation={"id": conversation.id})
    assert second.conversation is not None and second.conversation.id == conversation.id
    assert sent(upstream) == ["My name is Ada.", "What is my name?", "echo: What is my name?", "Again?"]
    assert alpha.responses.retrieve(second.id).conversation.id == conversation.id  # type: ignore[union-attr]


def test_conversation_with_previous_response_id_is_refused(alpha):
    conversation = alpha.conversations.create()
    first = alpha.responses.create(model="m", input="x")
    with pytest.raises(openai.BadRequestError) as error:
        alpha.responses.create(model="m", input="y", conversation=conversation.id, previous_response_id=first.id)
    assert error.value.body["code"] == "mutually_exclusive_parameters"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        alpha.responses.create(model="m", input="y", conversation="conv_missing")
    with pytest.raises(openai.BadRequestError) as error:
        alpha.responses.create(model="m", input="y", conversation=7)  # type: ignore[arg-type]
    assert error.value.body["param"] == "conversation"  # type: ignore[index]
    # None of these left the conversation held.
    alpha.responses.create(model="m", input="z", conversation=conversation.id)


def test_deleted_items_are_gone_from_what_the_model_sees(alpha, upstream):
    conversation = alpha.conversations.create(items=[user("keep"), user("forget")])
    forget = alpha.conversations.items.list(conversation.id).data[0]
    alpha.conversations.items.delete(forget.id, conversation_id=conversation.id)
    alpha.responses.create(model="m", input="next", conversation=conversation.id)
    assert sent(upstream) == ["keep", "next"]


def test_deleting_a_conversation_leaves_its_responses(alpha):
    conversation = alpha.conversations.create()
    response = alpha.responses.create(model="m", input="hi", conversation=conversation.id)
    alpha.conversations.delete(conversation.id)
    assert alpha.responses.retrieve(response.id).output_text == "echo: hi"
    assert texts(alpha.responses.input_items.list(response.id).data) == ["hi"]


def test_deleting_a_response_leaves_the_conversation_its_items(alpha, upstream):
    conversation = alpha.conversations.create()
    response = alpha.responses.create(model="m", input="hi", conversation=conversation.id)
    alpha.responses.delete(response.id)
    assert texts(alpha.conversations.items.list(conversation.id, order="asc").data) == ["hi", "echo: hi"]
    alpha.responses.create(model="m", input="more", conversation=conversation.id)
    assert sent(upstream) == ["hi", "echo: hi", "more"]


def test_unstored_response_still_appends(alpha):
    conversation = alpha.conversations.create()
    response = alpha.responses.create(model="m", input="quiet", conversation=conversation.id, store=False)
    with pytest.raises(openai.NotFoundError):
        alpha.responses.retrieve(response.id)
    items = alpha.conversations.items.list(conversation.id, order="asc").data
    assert texts(items) == ["quiet", "echo: quiet"] and items[1].id == response.output[0].id


def test_failed_response_appends_nothing_and_releases(alpha, upstream):
    conversation = alpha.conversations.create(items=[user("before")])
    upstream.script(Reply(status=500, body=b'{"error": {"message": "boom"}}'))
    with pytest.raises(openai.APIStatusError):
        alpha.responses.create(model="m", input="lost", conversation=conversation.id)
    upstream.script(Reply(text="partial " * 20, error_after=3))
    with alpha.responses.stream(model="m", input="lost too", conversation=conversation.id) as stream:
        for _ in stream:
            pass
    assert texts(alpha.conversations.items.list(conversation.id).data) == ["before"]
    alpha.responses.create(model="m", input="after", conversation=conversation.id)
    assert sent(upstream) == ["before", "after"]


def test_streamed_response_on_a_conversation(alpha, upstream):
    conversation = alpha.conversations.create(items=[user("ctx")])
    with alpha.responses.stream(model="m", input="streamed", conversation=conversation.id) as stream:
        final = stream.get_final_response()
    assert final.conversation is not None and final.conversation.id == conversation.id
    assert sent(upstream) == ["ctx", "streamed"]
    assert texts(alpha.conversations.items.list(conversation.id, order="asc").data) == [
        "ctx",
        "streamed",
        "echo: streamed",
    ]


def test_background_response_on_a_conversation(alpha, upstream):
    conversation = alpha.conversations.create(items=[user("ctx")])
    job = alpha.responses.create(model="m", input="later", conversation=conversation.id, background=True)
    assert job.conversation is not None and job.conversation.id == conversation.id
    done = wait_until(lambda: (r := alpha.responses.retrieve(job.id)).status == "completed" and r)
    assert done.output_text == "echo: later"
    assert sent(upstream) == ["ctx", "later"]
    assert texts(alpha.conversations.items.list(conversation.id, order="asc").data) == ["ctx", "later", "echo: later"]


def test_cancelled_background_response_appends_nothing_and_releases(alpha, upstream):
    conversation = alpha.conversations.create(items=[user("ctx")])
    upstream.script(Reply(text="slow " * 200, chunk_size=2, delay=0.05))
    job = alpha.responses.create(model="m", input="cancel me", conversation=conversation.id, background=True)
    wait_until(lambda: alpha.responses.retrieve(job.id).status == "in_progress")
    with pytest.raises(openai.BadRequestError) as error:
        alpha.responses.create(model="m", input="too soon", conversation=conversation.id)
    assert error.value.body["code"] == "conversation_locked"  # type: ignore[index]
    assert alpha.responses.cancel(job.id).status == "cancelled"
    assert texts(alpha.conversations.items.list(conversation.id).data) == ["ctx"]
    alpha.responses.create(model="m", input="now", conversation=conversation.id)
    assert sent(upstream) == ["ctx", "now"]


# -- two responses at once ---------------------------------------------------------------------


def test_second_response_is_refused_while_one_is_in_progress(alpha, upstream):
    conversation = alpha.conversations.create()
    upstream.script(Reply(text="first answer", wait=2.0))
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(alpha.responses.create(model="m", input="one", conversation=conversation.id))
    )
    first.start()
    wait_until(lambda: len(upstream.requests) == 1)
    with pytest.raises(openai.BadRequestError) as error:
        alpha.responses.create(model="m", input="two", conversation=conversation.id)
    body = error.value.body
    assert body == {  # type: ignore[comparison-overlap]
        "message": "Another process is currently operating on this conversation. Please retry in a few seconds.",
        "type": "invalid_request_error",
        "param": "conversation",
        "code": "conversation_locked",
    }
    first.join()
    assert results[0].output_text == "first answer"
    alpha.responses.create(model="m", input="three", conversation=conversation.id)
    assert sent(upstream) == ["one", "first answer", "three"]


def test_concurrent_clients_never_interleave(conv_server, upstream):
    with sdk(conv_server) as setup:
        conversation = setup.conversations.create()
    upstream.script(*[Reply(text=f"answer {i}", wait=0.3) for i in range(8)])
    barrier = threading.Barrier(8)
    outcomes: list[Any] = []

    def one(i: int) -> None:
        with sdk(conv_server) as client:
            barrier.wait()
            try:
                outcomes.append(client.responses.create(model="m", input=f"q{i}", conversation=conversation.id))
            except openai.BadRequestError as exc:
                outcomes.append(exc.body["code"])  # type: ignore[index]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = [o for o in outcomes if not isinstance(o, str)]
    assert done and all(o == "conversation_locked" for o in outcomes if isinstance(o, str))
    with sdk(conv_server) as check:
        items = list(check.conversations.items.list(conversation.id, order="asc"))
    # Each response's input and output sit side by side: nothing interleaved, nothing lost.
    assert len(items) == 2 * len(done)
    for k, (question, answer) in enumerate(zip(items[::2], items[1::2], strict=True)):
        response = next(r for r in done if r.output[0].id == answer.id)
        assert question.id == check_input_id(conv_server, response.id)
        # And each one saw every response before it: they ran one after the other.
        asked = question.content[0].text
        seen = next(r["messages"] for r in upstream.requests if r["messages"][-1]["content"] == asked)
        assert len(seen) == 2 * k + 1


def check_input_id(server: ServerThread, response_id: str) -> str:
    with sdk(server) as client:
        return client.responses.input_items.list(response_id).data[0].id


def test_two_replicas_refuse_the_second_response(upstream, tmp_path):
    """Two server processes on one PostgreSQL database: a response in progress on one
    replica holds the conversation for the other one too."""
    from tests.support.cluster import Cluster, client

    nodes = Cluster(tmp_path, upstream.url)
    try:
        a, b = nodes.replica("a", max_concurrent=2), nodes.replica("b", max_concurrent=2)
        with client(a) as on_a, client(b) as on_b:
            conversation = on_a.conversations.create(items=[user("shared")])
            upstream.script(Reply(text="from a", wait=2.0))
            results: list[Any] = []
            first = threading.Thread(
                target=lambda: results.append(on_a.responses.create(model="m", input="a", conversation=conversation.id))
            )
            first.start()
            wait_until(lambda: len(upstream.requests) == 1)
            with pytest.raises(openai.BadRequestError) as error:
                on_b.responses.create(model="m", input="b", conversation=conversation.id)
            assert error.value.body["code"] == "conversation_locked"  # type: ignore[index]
            first.join()
            assert results[0].output_text == "from a"
            on_b.responses.create(model="m", input="b", conversation=conversation.id)
            assert sent(upstream) == ["shared", "a", "from a", "b"]
            # A background run on replica b holds it against replica a as well.
            upstream.script(Reply(text="slow " * 100, chunk_size=2, delay=0.05))
            job = on_b.responses.create(model="m", input="bg", conversation=conversation.id, background=True)
            with pytest.raises(openai.BadRequestError):
                on_a.responses.create(model="m", input="c", conversation=conversation.id)
            wait_until(lambda: on_a.responses.retrieve(job.id).status == "completed")
            on_a.responses.create(model="m", input="c", conversation=conversation.id)
            assert sent(upstream)[-3:] == ["bg", "slow " * 100, "c"]
    finally:
        nodes.close()


def _status_or_none(client: openai.OpenAI, response_id: str) -> str | None:
    try:
        return client.responses.retrieve(response_id).status
    except openai.NotFoundError:
        return None


def _create_when_free(client: openai.OpenAI, conversation_id: str, text: str) -> Any:
    try:
        return client.responses.create(model="m", input=text, conversation=conversation_id)
    except openai.BadRequestError as exc:
        assert exc.body["code"] == "conversation_locked"  # type: ignore[index]
        return None


@pytest.mark.parametrize("store", [True, False])
def test_client_gone_mid_stream_appends_nothing_and_releases(alpha, upstream, store):
    conversation = alpha.conversations.create(items=[user("ctx")])
    upstream.script(Reply(text="w" * 400, chunk_size=2, delay=0.05))
    stream = alpha.responses.create(model="m", input="go", conversation=conversation.id, stream=True, store=store)
    response_id = None
    for event in stream:
        if event.type == "response.created":
            response_id = event.response.id
        if event.type == "response.output_text.delta":
            break
    stream.close()  # and hang up
    assert response_id is not None
    wait_until(lambda: upstream.disconnects == 1)
    if store:
        assert wait_until(lambda: _status_or_none(alpha, response_id) == "cancelled")
    wait_until(lambda: _create_when_free(alpha, conversation.id, "after"))
    assert sent(upstream) == ["ctx", "after"]
    assert texts(alpha.conversations.items.list(conversation.id, order="asc").data) == ["ctx", "after", "echo: after"]
