from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from continuo.api.app import create_app
from tests.support import wire
from tests.support.configs import make_config
from tests.support.fake_chat import FakeChatUpstream
from tests.support.fake_responses import FakeResponsesUpstream
from tests.support.process import ServerProcess
from tests.support.servers import ServerThread

# Servers run in threads of this process: without a short GIL switch interval every hop
# between the client and a server thread waits up to 5 ms.
sys.setswitchinterval(0.0005)


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeChatUpstream]:
    fake = FakeChatUpstream()
    server = ServerThread(fake.app).start()
    fake.url = server.url  # type: ignore[attr-defined]
    yield fake
    server.stop()


@pytest.fixture(scope="session")
def server(upstream: FakeChatUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    os.environ["CONTINUO_TEST_UPSTREAM_KEY"] = "sk-upstream-secret"
    db = tmp_path_factory.mktemp("db") / "continuo.db"
    config = make_config(upstream.url, db, server={"max_body_bytes": 2 * 1024 * 1024})  # type: ignore[attr-defined]
    running = ServerThread(create_app(config)).start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _fresh_upstream(upstream: FakeChatUpstream) -> None:
    upstream.reset()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    totals = wire.TOTALS
    terminalreporter.write_line(
        f"wire contract: {totals.exchanges} answers, {totals.events} stream events and "
        f"{totals.stored} stored copies checked in {totals.seconds:.1f}s"
    )


@pytest.fixture(autouse=True)
def _wire_contract(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if anything a Continuo server answered it on /v1/responses breaks a
    spec's schema or the stream contract (tests/support/wire.py, contract.py)."""
    yield
    exempt = frozenset(arg for marker in request.node.iter_markers("wire_exempt") for arg in marker.args)
    found = wire.problems(wire.LOG.unchecked(), exempt)
    if found:
        pytest.fail("what the server put on the wire breaks the contract:\n" + "\n".join(found), pytrace=False)


@pytest.fixture
def client(server: ServerThread) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-client", max_retries=0) as c:
        yield c


@pytest.fixture
async def aclient(server: ServerThread) -> Any:
    async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="sk-client", max_retries=0) as c:
        yield c


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of this test run's own on the local PostgreSQL server."""
    from tests.support.postgres import create_database, drop_database

    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def rfake() -> Iterator[FakeResponsesUpstream]:
    """A stateless Responses upstream (scripted), for a module's tests."""
    fake = FakeResponsesUpstream()
    server = ServerThread(fake.app).start()
    fake.url = server.url  # type: ignore[attr-defined]
    yield fake
    server.stop()


@pytest.fixture
def processes() -> Iterator[list[ServerProcess]]:
    """Servers a test starts as processes, stopped when it ends."""
    started: list[ServerProcess] = []
    yield started
    for process in started:
        process.stop()
