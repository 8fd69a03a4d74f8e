"""The embedded model under concurrent streams: aggregate tokens/s and time to first token
with 1, 2 and 4 streams at once.

    python -m benchmarks.local_streams                      # in-process backend, parallel 4 and 1
    python -m benchmarks.local_streams --parallel 4         # one setting only
    python -m benchmarks.local_streams --url http://127.0.0.1:8080   # a running server

In-process, the backend is built with each ``--parallel`` value in turn (1 is the old
one-at-a-time behaviour), so the table shows what llama.cpp's continuous batching gains.
Against a server, each stream is a streamed ``/v1/responses`` call through the openai SDK.
Each stream asks for a long story, capped at ``--tokens`` output tokens, temperature 0.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

PROMPTS = [
    "Write a long story about a cat named Luna.",
    "Write a long story about a lighthouse keeper.",
    "Write a long story about a robot who learns to paint.",
    "Write a long story about a ship lost at sea.",
]

# One stream: (seconds to the first text token, output tokens).
Stream = Callable[[int, int], Awaitable[tuple[float, int]]]


def in_process(parallel: int, n_threads: int) -> tuple[Stream, Callable[[], Awaitable[None]]]:
    from continuo.backends.base import ModelRequest, TextDelta, Usage
    from continuo.backends.local import LocalBackend
    from continuo.config import ProviderConfig

    backend = LocalBackend(ProviderConfig(name="local", type="local", parallel=parallel, n_threads=n_threads))

    async def stream(index: int, tokens: int) -> tuple[float, int]:
        items = [{"type": "message", "role": "user", "content": PROMPTS[index % len(PROMPTS)]}]
        request = ModelRequest(model="local", items=items, params={"max_output_tokens": tokens, "temperature": 0})
        start = time.perf_counter()
        first = 0.0
        count = 0
        async for delta in await backend.open(request):
            if isinstance(delta, TextDelta) and not first:
                first = time.perf_counter() - start
            elif isinstance(delta, Usage):
                count = delta.output_tokens
        return first, count

    async def setup() -> None:
        await backend.load()

    stream.backend = backend  # type: ignore[attr-defined]
    return stream, setup


def over_http(url: str, model: str) -> Stream:
    import openai

    client = openai.AsyncOpenAI(base_url=f"{url.rstrip('/')}/v1", api_key="none", max_retries=0, timeout=600)

    async def stream(index: int, tokens: int) -> tuple[float, int]:
        start = time.perf_counter()
        first = 0.0
        count = 0
        events = await client.responses.create(
            model=model,
            input=PROMPTS[index % len(PROMPTS)],
            max_output_tokens=tokens,
            temperature=0,
            stream=True,
            store=False,
        )
        async for event in events:
            if event.type == "response.output_text.delta" and not first:
                first = time.perf_counter() - start
            elif event.type in ("response.completed", "response.incomplete") and event.response.usage:
                count = event.response.usage.output_tokens
        return first, count

    return stream


async def measure(stream: Stream, concurrency: int, tokens: int, rounds: int) -> dict[str, Any]:
    firsts: list[float] = []
    total_tokens = 0
    total_time = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        results = await asyncio.gather(*(stream(i, tokens) for i in range(concurrency)))
        total_time += time.perf_counter() - start
        firsts += [first for first, _ in results]
        total_tokens += sum(count for _, count in results)
    return {
        "streams": concurrency,
        "tokens_per_s": total_tokens / total_time,
        "ttft_median_s": statistics.median(firsts),
        "ttft_max_s": max(firsts),
    }


def row(label: str, result: dict[str, Any]) -> str:
    return (
        f"| {label} | {result['streams']} | {result['tokens_per_s']:.1f} | "
        f"{result['ttft_median_s']:.2f} | {result['ttft_max_s']:.2f} |"
    )


async def main_async(args: argparse.Namespace) -> None:
    print("| setting | streams | aggregate tokens/s | first token, median (s) | first token, max (s) |")
    print("| --- | --- | --- | --- | --- |")
    if args.url:
        stream = over_http(args.url, args.model)
        await stream(0, 4)  # warm-up
        for concurrency in args.streams:
            print(row(args.url, await measure(stream, concurrency, args.tokens, args.rounds)), flush=True)
        return
    for parallel in args.parallel:
        stream, setup = in_process(parallel, args.n_threads)
        await setup()
        await stream(0, 4)  # warm-up
        for concurrency in args.streams:
            label = f"parallel={parallel}"
            print(row(label, await measure(stream, concurrency, args.tokens, args.rounds)), flush=True)
        await stream.backend.aclose()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running Continuo server (default: the backend in-process)")
    parser.add_argument("--model", default="local")
    parser.add_argument("--parallel", type=int, nargs="+", default=[4, 1], help="in-process slot counts to compare")
    parser.add_argument("--n-threads", type=int, default=1)
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--tokens", type=int, default=64, help="output tokens per stream")
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
