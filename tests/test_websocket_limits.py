"""WebSocket mode's bounds: lanes and responses per socket, the connection-local cache,
the connection's age, and the key's stream slots and request rate."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import openai
import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

from continuo.api.app import create_app
from continuo.core.socket_cache import ContextCache
from tests.support.configs import make_config
from tests.support.fake_chat import Reply
from tests.support.servers import ServerThread
from tests.support.sockets import open_socket
from tests.support.waits import wait_until


@pytest.fixture(scope="module")
def tight(upstream, tmp_path_factory) -> Iterator[ServerThread]:
    db = tmp_path_factory.mktemp("ws-limits") / "continuo.db"
    websocket = {"max_streams": 2, "max_active_responses": 3, "cache_responses": 2, "cache_bytes": 64 * 1024}
    config = make_config(upstream.url, db, websocket=websocket)
    server = ServerThread(create_app(config)).start()
    yield server
    server.stop()


def test_lanes_and_responses_per_socket_are_bounded(tight, upstream):
    hold = threading.Event()
    upstream.script(Reply(text="held a", hold=hold), Reply(text="held b", hold=hold))
    try:
        with open_socket(tight.url) as ws:
            ws.create(model="gpt-test", input="a1", store=False, stream_id="a")
            ws.create(model="gpt-test", input="b1", store=False, stream_id="b")
            # A third lane while two are in use.
            ws.create(model="gpt-test", input="c1", store=False, stream_id="c")
            error = ws.error("c")
            assert error["error"]["code"] == "websocket_stream_limit_reached"
            assert error["error"]["param"] == "stream_id" and error["status"] == 400
            # A third response waits in lane a; a fourth is one too many.
            ws.create(model="gpt-test", input="a2", store=False, stream_id="a")
            ws.create(model="gpt-test", input="a3", store=False, stream_id="a")
            assert ws.error("a")["error"]["code"] == "websocket_response_limit_reached"
            hold.set()
            assert ws.response("a")[-1]["type"] == "response.completed"
            assert ws.response("b")[-1]["type"] == "response.completed"
            assert ws.response("a")[-1]["type"] == "response.completed"
            # Once lanes are free again, a new one is accepted.
            ws.create(model="gpt-test", input="c2", store=False, stream_id="c")
            assert ws.response("c")[-1]["type"] == "response.completed"
    finally:
        hold.set()
    assert sorted(r["messages"][-1]["content"] for r in upstream.requests) == ["a1", "a2", "b1", "c2"]


def test_the_cache_keeps_the_newest_contexts_within_its_bounds(tight, upstream):
    with open_socket(tight.url) as ws:
        ids = []
        for n in range(3):
            ws.create(model="gpt-test", input=f"turn {n}", store=False)
            ids.append(ws.response()[-1]["response"]["id"])
        # Two contexts at most: the oldest went first.
        ws.create(model="gpt-test", input="again", store=False, previous_response_id=ids[0])
        assert ws.error()["error"]["code"] == "previous_response_not_found"
        ws.create(model="gpt-test", input="again", store=False, previous_response_id=ids[2])
        assert ws.response()[-1]["type"] == "response.completed"
        # A context larger than the byte bound on its own is not kept at all.
        upstream.script(Reply(text="ok"))
        ws.create(model="gpt-test", input="x" * 70_000, store=False)
        big = ws.response()[-1]["response"]["id"]
        ws.create(model="gpt-test", input="and?", store=False, previous_response_id=big)
        assert ws.error()["error"]["code"] == "previous_response_not_found"


def test_the_context_cache_counts_bytes_and_entries():
    cache = ContextCache(max_entries=3, max_bytes=100)
    assert cache.put("a", [], 40) and cache.put("b", [], 40)
    assert cache.bytes == 80
    assert cache.put("c", [], 40)  # over the bytes: the oldest goes
    assert "a" not in cache and cache.bytes == 80
    assert cache.get("b") is not None  # used: now the newest
    assert cache.put("d", [], 10) and cache.put("e", [], 10)
    assert "c" not in cache and len(cache) == 3
    assert not cache.put("huge", [], 101) and "huge" not in cache
    cache.evict("b")
    assert cache.bytes == 20
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0


def test_a_socket_holds_a_stream_slot_of_its_key(upstream, tmp_path):
    config = make_config(upstream.url, tmp_path / "slots.db", limits={"concurrent_streams": 2})
    server = ServerThread(create_app(config)).start()

    def accepted() -> bool:
        try:
            with open_socket(server.url), open_socket(server.url):
                return True
        except InvalidStatus:
            return False

    try:
        with open_socket(server.url), open_socket(server.url):
            with pytest.raises(InvalidStatus) as raised, open_socket(server.url):
                pass
            assert raised.value.response.status_code == 429
            assert b"rate_limit_exceeded" in raised.value.response.body
        # Freed when the sockets close (as soon as the server has seen them go).
        wait_until(accepted)
    finally:
        server.stop()


def test_each_response_counts_against_the_requests_per_minute(upstream, tmp_path):
    config = make_config(upstream.url, tmp_path / "rpm.db", limits={"requests_per_minute": 2})
    server = ServerThread(create_app(config)).start()
    try:
        with open_socket(server.url) as ws:  # the handshake is one request
            ws.create(model="gpt-test", input="one", store=False)
            assert ws.response()[-1]["type"] == "response.completed"
            ws.create(model="gpt-test", input="two", store=False, stream_id="s")
            error = ws.error("s")
            assert error["status"] == 429 and error["error"]["code"] == "rate_limit_exceeded"
            assert int(error["error"]["headers"]["retry-after"]) >= 1
    finally:
        server.stop()
    assert len(upstream.requests) == 1


def test_the_server_closes_a_socket_at_its_age_limit(upstream, tmp_path):
    config = make_config(upstream.url, tmp_path / "age.db", websocket={"max_age_seconds": 0.5})
    server = ServerThread(create_app(config)).start()
    try:
        with open_socket(server.url) as ws:
            error = ws.error()
            assert error["error"]["code"] == "websocket_connection_limit_reached"
            assert error["error"]["message"].startswith("Responses websocket connection limit reached")
            with pytest.raises(ConnectionClosedOK) as closed:
                ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    finally:
        server.stop()


def test_a_response_running_at_the_age_limit_finishes_first(upstream, tmp_path):
    config = make_config(upstream.url, tmp_path / "age2.db", websocket={"max_age_seconds": 2})
    server = ServerThread(create_app(config)).start()
    hold = threading.Event()
    upstream.script(Reply(text="finished anyway", hold=hold))
    try:
        with open_socket(server.url) as ws:
            ws.create(model="gpt-test", input="go", store=False, stream_id="a")
            ws.until(lambda e: e["type"] == "response.output_text.delta")
            ws.create(model="gpt-test", input="waits", store=False, stream_id="a")
            # The limit passes while the first response runs: the waiting one is refused...
            refused = ws.response("a")[-1]
            assert refused["type"] == "error"
            assert refused["error"]["code"] == "websocket_connection_limit_reached"
            # ...the running one finishes, then the socket says why it closes, and closes.
            hold.set()
            finished = ws.response("a")
            assert finished[-1]["type"] == "response.completed"
            assert "".join(e["delta"] for e in ws.received if e["type"] == "response.output_text.delta") == (
                "finished anyway"
            )
            assert ws.error()["error"]["code"] == "websocket_connection_limit_reached"
            with pytest.raises(ConnectionClosedOK):
                ws.recv()
    finally:
        hold.set()
        server.stop()
    assert len(upstream.requests) == 1


def test_a_server_that_shuts_down_stores_what_ran_on_its_sockets_as_cancelled(upstream, tmp_path):
    config = make_config(upstream.url, tmp_path / "shutdown.db")
    server = ServerThread(create_app(config)).start()
    hold = threading.Event()
    upstream.script(Reply(text="interrupted by a restart", hold=hold))
    try:
        with open_socket(server.url) as ws:
            ws.create(model="gpt-test", input="go")
            response_id = ws.recv()["response"]["id"]
            ws.until(lambda e: e["type"] == "response.output_text.delta")
            server.stop()
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
    finally:
        hold.set()
    again = ServerThread(create_app(config)).start()
    try:
        with openai.OpenAI(base_url=f"{again.url}/v1", api_key="k") as client:
            stored = client.responses.retrieve(response_id)
    finally:
        again.stop()
    assert stored.status == "cancelled" and stored.output_text == "inte"
