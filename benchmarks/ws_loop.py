"""A 20-turn agent loop over one WebSocket vs the same turns over HTTP, for the benchmark
row "WebSocket mode": per-turn added latency and server CPU.

Each turn sends only its new input item and chains to the previous response:

- over one socket (``ws_loop``): ``response.create`` frames with ``previous_response_id``,
  ``store: false`` by default (the context stays in the socket's cache, as Codex does) or
  ``store: true``;
- over HTTP (``http_loop``): ``POST /v1/responses`` streamed, ``store: true`` (HTTP can
  only chain stored responses), on one keep-alive connection.

Both time each turn from sending the request to its terminal event. The benchmark's fake
upstream answers text only, so a turn's new item is a user message standing in for a tool
output (same size and cost to Continuo: one new item, one chained model call).

Wiring into ``benchmarks.run``: around each loop take ``cpu_snapshot(continuo_pid)`` and
``cpu_delta`` (benchmarks/procs.py) and divide by ``turns``; subtract the direct-to-upstream
p50 as the other rows do. Standalone, against a running server:

    .venv/bin/python -m benchmarks.ws_loop --url http://127.0.0.1:8080 --model bench-model
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp
import orjson
from websockets.asyncio.client import connect

TERMINAL = (b'"response.completed"', b'"response.failed"', b'"response.incomplete"', b'"response.cancelled"')


def _turn_input(turn: int) -> list[dict[str, Any]]:
    return [{"type": "message", "role": "user", "content": f"Result of tool call {turn}: ok."}]


def _headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


async def ws_loop(
    base_url: str, model: str, turns: int = 20, *, store: bool = False, key: str | None = None
) -> list[float]:
    """Seconds per turn of ``turns`` chained turns over one WebSocket."""
    url = base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1) + "/v1/responses"
    latencies: list[float] = []
    previous: str | None = None
    async with connect(url, additional_headers=_headers(key), max_size=None) as ws:
        for turn in range(turns):
            body: dict[str, Any] = {"type": "response.create", "model": model, "input": _turn_input(turn)}
            body["store"] = store
            if previous is not None:
                body["previous_response_id"] = previous
            started = time.perf_counter()
            await ws.send(orjson.dumps(body).decode())
            while True:
                frame = await ws.recv()
                data = frame.encode() if isinstance(frame, str) else frame
                if data.startswith(b'{"type":"error"'):
                    raise RuntimeError(f"turn {turn}: {data[:300]!r}")
                if any(kind in data[:64] or kind in data[-96:] for kind in TERMINAL):
                    event = orjson.loads(data)
                    if event["type"] in ("response.completed", "response.incomplete"):
                        break
                    raise RuntimeError(f"turn {turn} ended {event['type']}")
            latencies.append(time.perf_counter() - started)
            previous = event["response"]["id"]
    return latencies


async def http_loop(base_url: str, model: str, turns: int = 20, *, key: str | None = None) -> list[float]:
    """Seconds per turn of the same turns over HTTP (streamed, ``store: true``, chained)."""
    latencies: list[float] = []
    previous: str | None = None
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, headers=_headers(key)) as session:
        for turn in range(turns):
            body: dict[str, Any] = {"model": model, "input": _turn_input(turn), "stream": True, "store": True}
            if previous is not None:
                body["previous_response_id"] = previous
            started = time.perf_counter()
            async with session.post(f"{base_url}/v1/responses", data=orjson.dumps(body)) as response:
                response.raise_for_status()
                last = b""
                async for line in response.content:
                    if line.startswith(b"data: "):
                        last = line[6:]
            event = orjson.loads(last)
            if event["type"] != "response.completed":
                raise RuntimeError(f"turn {turn} ended {event['type']}")
            latencies.append(time.perf_counter() - started)
            previous = event["response"]["id"]
    return latencies


def _p50(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


async def _main(args: argparse.Namespace) -> None:
    results: dict[str, list[float]] = {"ws store:false": [], "ws store:true": [], "http store:true": []}
    for _ in range(args.repeat):
        results["ws store:false"] += await ws_loop(args.url, args.model, args.turns, key=args.key)
        results["ws store:true"] += await ws_loop(args.url, args.model, args.turns, store=True, key=args.key)
        results["http store:true"] += await http_loop(args.url, args.model, args.turns, key=args.key)
    for name, values in results.items():
        print(f"{name:16} p50 per turn {_p50(values) * 1000:.2f} ms over {len(values)} turns")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--key", default=None)
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
