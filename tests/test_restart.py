"""Kill the server (SIGKILL, SIGTERM) with background runs queued and running: every run
ends in a terminal state, persisted events still replay, nothing else stored is lost."""

from __future__ import annotations

import threading
from pathlib import Path

import openai
import pytest

from tests.support.configs import write_config
from tests.support.fake_chat import Reply
from tests.support.process import ServerProcess
from tests.support.waits import wait_until

RESTARTED = "stopped before it finished"
SHUTDOWN = "shut down while this response was running"


@pytest.fixture
def config(tmp_path, upstream) -> Path:
    return write_config(
        tmp_path / "continuo.toml",
        database_url=f"sqlite:///{tmp_path / 'restart.db'}",
        upstream_url=upstream.url,
        extra="[background]\nmax_concurrent = 1\nlease_seconds = 1\npoll_seconds = 0.2",
    )


def client_for(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)


def event_types(client: openai.OpenAI, response_id: str) -> list[str]:
    return [event.type for event in client.responses.retrieve(response_id, stream=True)]


def test_sigkill_during_background_run(config, upstream, processes):
    first = ServerProcess(config).start()
    processes.append(first)
    with client_for(first) as client:
        kept = client.responses.create(model="m", input="keep me")
        upstream.script(Reply(text="slow " * 200, chunk_size=3, delay=0.05))
        running = client.responses.create(model="m", input="long", background=True)
        queued = client.responses.create(model="m", input="waiting", background=True)
        with client.responses.retrieve(running.id, stream=True) as live:
            next(e for e in live if e.type == "response.output_text.delta")  # some deltas are persisted
    first.kill()

    second = ServerProcess(config, port=first.port).start()
    processes.append(second)
    with client_for(second) as client:
        # Ended once the dead server's lease has run out.
        failed = wait_until(lambda: (r := client.responses.retrieve(running.id)).status != "in_progress" and r)
        assert failed.status == "failed"
        assert RESTARTED in failed.error.message
        types = event_types(client, running.id)
        assert types[:3] == ["response.created", "response.queued", "response.in_progress"]
        assert "response.output_text.delta" in types
        assert types[-1] == "response.failed"
        done = wait_until(lambda: (r := client.responses.retrieve(queued.id)).status == "completed" and r)
        assert done.output_text == "echo: waiting"
        assert client.responses.retrieve(kept.id).output_text == "echo: keep me"


def test_sigterm_drains_foreground_and_ends_background(config, upstream, processes):
    server = ServerProcess(config).start()
    processes.append(server)
    upstream.script(Reply(text="bg " * 300, chunk_size=3, delay=0.05))
    with client_for(server) as client:
        running = client.responses.create(model="m", input="long", background=True)
        wait_until(lambda: client.responses.retrieve(running.id).status == "in_progress")
    upstream.script(Reply(text="foreground finishes", wait=1.0))
    result: dict = {}

    def foreground() -> None:
        with client_for(server) as client:
            result["response"] = client.responses.create(model="m", input="fg")

    thread = threading.Thread(target=foreground)
    thread.start()
    wait_until(lambda: len(upstream.requests) == 2)
    assert server.terminate() in (0, -15)  # uvicorn re-raises SIGTERM after a clean shutdown
    thread.join(timeout=10)
    assert result["response"].output_text == "foreground finishes"

    restarted = ServerProcess(config, port=server.port).start()
    processes.append(restarted)
    with client_for(restarted) as client:
        ended = client.responses.retrieve(running.id)
        assert ended.status == "failed"
        assert SHUTDOWN in ended.error.message
        assert event_types(client, running.id)[-1] == "response.failed"
        assert client.responses.retrieve(result["response"].id).status == "completed"


def test_a_second_server_on_the_same_sqlite_file_leaves_running_runs_alone(config, upstream, processes):
    first = ServerProcess(config).start()
    processes.append(first)
    upstream.script(Reply(text="steady " * 60, chunk_size=3, delay=0.04))
    with client_for(first) as client:
        running = client.responses.create(model="m", input="long", background=True)
        wait_until(lambda: client.responses.retrieve(running.id).status == "in_progress")
        second = ServerProcess(config).start()  # same file, another port
        processes.append(second)
        with client_for(second) as other:
            done = wait_until(lambda: (r := other.responses.retrieve(running.id)).status != "in_progress" and r)
        assert done.status == "completed"
        assert done.output_text == "steady " * 60
        sequence = [event.sequence_number for event in client.responses.retrieve(running.id, stream=True)]
        assert sequence == list(range(len(sequence)))
    assert "UNIQUE constraint" not in first.log_path.read_text()


def test_a_cancel_sent_before_a_dead_servers_lease_runs_out_wins(tmp_path, upstream, processes):
    config = write_config(
        tmp_path / "continuo.toml",
        database_url=f"sqlite:///{tmp_path / 'cancel.db'}",
        upstream_url=upstream.url,
        extra="[background]\nlease_seconds = 20\npoll_seconds = 0.2",
    )
    first = ServerProcess(config).start()
    processes.append(first)
    upstream.script(Reply(text="slow " * 200, chunk_size=3, delay=0.05))
    with client_for(first) as client:
        running = client.responses.create(model="m", input="long", background=True)
        wait_until(lambda: client.responses.retrieve(running.id).status == "in_progress")
    first.kill()
    second = ServerProcess(config).start()
    processes.append(second)
    with client_for(second) as client:
        assert client.responses.retrieve(running.id).status == "in_progress"  # its lease still holds
        ended = client.responses.cancel(running.id)
        assert ended.status == "cancelled"
        assert event_types(client, running.id)[-1] == "response.cancelled"
