"""Several processes on one SQLite file: `continuo serve --workers N`, or servers started
side by side. Everything that works across PostgreSQL replicas works across them: any
process serves any id, runs are claimed once, cancel and follow cross processes (woken at
once, not by polling), a killed worker is restarted and its runs end, limits are shared."""

from __future__ import annotations

import os
import signal
import socket
import threading
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.configs import write_config
from tests.support.fake_chat import Reply
from tests.support.process import ServerProcess
from tests.support.waits import wait_until


def sdk(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="k", max_retries=0)


def config(tmp: Path, upstream_url: str, extra: str) -> Path:
    return write_config(
        tmp / "continuo.toml", database_url=f"sqlite:///{tmp / 'shared.db'}", upstream_url=upstream_url, extra=extra
    )


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in os.listdir(f"/proc/{pid}/task"):
        text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        found |= {int(child) for child in text.split()}
    return found


def workers_of(server: ServerProcess) -> set[int]:
    """The server processes under uvicorn's supervisor (not multiprocessing helpers)."""
    assert server.process is not None
    found = set()
    for pid in children(server.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_text()
        except FileNotFoundError:
            continue
        if "spawn_main" in command:
            found.add(pid)
    return found


def test_workers_share_one_port_and_one_sqlite_file(tmp_path, upstream, processes):
    path = config(tmp_path, upstream.url, "[background]\nlease_seconds = 2\npoll_seconds = 0.2\n")
    server = ServerProcess(path, args=("--workers", "2")).start()
    processes.append(server)
    wait_until(lambda: len(workers_of(server)) == 2)
    errors: list[str] = []
    ids: list[str] = []

    def client_thread(n: int) -> None:
        with httpx.Client(base_url=f"{server.url}/v1", timeout=30) as http:
            for i in range(n):
                # A new connection each time, so both workers take requests.
                answer = http.post(
                    "/responses", json={"model": "m", "input": f"hi {i}"}, headers={"connection": "close"}
                )
                if answer.status_code != 200:
                    errors.append(answer.text)
                else:
                    ids.append(answer.json()["id"])

    threads = [threading.Thread(target=client_thread, args=(25,)) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ids) == 400
    with httpx.Client(base_url=f"{server.url}/v1", timeout=30) as http:
        for response_id in ids[::10]:
            assert http.get(f"/responses/{response_id}", headers={"connection": "close"}).status_code == 200

    with sdk(server) as client:
        before = len(upstream.requests)
        queued = [client.responses.create(model="m", input=f"bg {i}", background=True) for i in range(8)]
        done = [
            wait_until(lambda q=q: (r := client.responses.retrieve(q.id)).status == "completed" and r) for q in queued
        ]
        assert [r.output_text for r in done] == [f"echo: bg {i}" for i in range(8)]
        assert len(upstream.requests) - before == 8  # each claimed exactly once

        # A worker killed outright: its run ends (its lease runs out), the supervisor
        # starts another worker.
        upstream.script(Reply(text="slow " * 400, chunk_size=2, delay=0.05))
        running = client.responses.create(model="m", input="long", background=True)
        wait_until(lambda: client.responses.retrieve(running.id).status == "in_progress")
        # ... and its upstream call has begun: in_progress comes with the claim, before the
        # call, and a worker killed in between left the slow reply to the next request.
        wait_until(lambda: not upstream.replies)
        old = workers_of(server)
        for pid in old:
            os.kill(pid, signal.SIGKILL)
        wait_until(lambda: len(workers_of(server)) == 2 and not workers_of(server) & old, timeout=30)
        ended = wait_until(lambda: (r := client.responses.retrieve(running.id)).status != "in_progress" and r)
        assert ended.status == "failed"
        assert client.responses.create(model="m", input="after").output_text == "echo: after"


def test_follow_and_cancel_cross_processes_without_polling(tmp_path, upstream, processes):
    # Long polls and leases: only a wake-up from the other process can make this prompt.
    path = config(tmp_path, upstream.url, "[background]\nlease_seconds = 60\npoll_seconds = 60\n")
    first = ServerProcess(path).start()
    processes.append(first)
    upstream.script(Reply(text="tick " * 300, chunk_size=1, delay=0.02))
    with sdk(first) as on_first:
        running = on_first.responses.create(model="m", input="long", background=True)
        wait_until(lambda: on_first.responses.retrieve(running.id).status == "in_progress")
    second = ServerProcess(path).start()
    processes.append(second)
    with sdk(second) as on_second:
        seen: list[str] = []
        stream = on_second.responses.retrieve(running.id, stream=True)
        for event in stream:
            seen.append(event.type)
            if seen.count("response.output_text.delta") >= 20:
                break
        stream.close()
        cancelled = on_second.responses.cancel(running.id)
        assert cancelled.status == "cancelled"
        assert [e.type for e in on_second.responses.retrieve(running.id, stream=True)][-1] == "response.cancelled"


def _redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("counted_in", ["database", "redis"])
def test_limits_hold_across_processes(tmp_path, upstream, processes, counted_in):
    extra = "[limits]\nrequests_per_minute = 4\nconcurrent_streams = 1\n"
    if counted_in == "redis":
        if not _redis_up():
            if os.environ.get("CI"):
                pytest.fail("Redis is not running on 127.0.0.1:6379")
            pytest.skip("Redis is not running on 127.0.0.1:6379")
        extra += 'redis_url = "redis://127.0.0.1:6379/0"\n'
    path = config(tmp_path, upstream.url, extra)
    first = ServerProcess(path).start()
    second = ServerProcess(path).start()
    processes += [first, second]
    key = f"sk-{tmp_path.name}"

    def post(server: ServerProcess, **body: object) -> httpx.Response:
        return httpx.post(
            f"{server.url}/v1/responses",
            json={"model": "m", "input": "hi", **body},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )

    upstream.script(Reply(text="held " * 200, chunk_size=1, delay=0.02))
    with httpx.stream(
        "POST",
        f"{first.url}/v1/responses",
        json={"model": "m", "input": "stream", "stream": True},
        headers={"authorization": f"Bearer {key}"},
        timeout=30,
    ) as held:
        lines = held.iter_lines()  # kept: a dropped iterator closes the response
        assert next(lines) == "event: response.created"
        refused = post(second, stream=True)
        assert refused.status_code == 429 and "streams" in refused.json()["error"]["message"]
    assert [post(s).status_code for s in (second, first)] == [200, 200]
    answer = post(second)
    assert answer.status_code == 429 and answer.headers["retry-after"]
    assert post(first).status_code == 429
