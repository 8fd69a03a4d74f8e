"""Continuo's benchmark: one command, everything against a direct-to-upstream baseline
measured in the same run.

    .venv/bin/python -m benchmarks.run            # full run, a few minutes
    .venv/bin/python -m benchmarks.run --quick    # smoke run, about 30 s
    .venv/bin/python -m benchmarks.run --profile  # also py-spy Continuo on an extra batch

It starts the fast fake upstream (``benchmarks/upstream.py``) and Continuo as processes
of their own, pinned to different cores, on a fresh SQLite file in a temporary folder;
runs the scenarios (see docs/benchmarks.md); writes ``benchmarks/results/latest.json``,
``latest.png`` and ``latest.md``; prints the Markdown table; and stops everything it
started, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks import loadgen, report
from benchmarks.procs import (
    Child,
    available_cores,
    cpu_delta,
    cpu_seconds,
    cpu_snapshot,
    established_to,
    free_port,
    machine,
    memory_kib,
    python,
    system_busy_seconds,
    thread_cpu_seconds,
    threads,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"

INPUT = "Say hello in one short sentence."
MODEL = "bench-model"
SLOW_MODEL = "slow-bench-model"


@dataclass
class Plan:
    c1: int = 2000  # requests at concurrency 1
    cn: int = 5000  # requests at concurrency 16 and 64
    concurrencies: tuple[int, ...] = (16, 64)
    warmup: int = 200
    stream_c1: int = 1000
    stream_cn: int = 3000
    stream_concurrency: int = 16
    chain_depths: tuple[int, ...] = (1, 10, 100, 1000)
    chain_n: int = 200  # measured requests per depth
    memory_streams: int = 1000
    tokens: int = 32
    slow_interval: float = 1.0
    slow_tokens: int = 120


QUICK = Plan(
    c1=200,
    cn=600,
    warmup=50,
    stream_c1=100,
    stream_cn=300,
    chain_depths=(1, 10, 100),
    chain_n=30,
    memory_streams=200,
)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, plan: Plan, workdir: Path, pin: bool) -> None:
        self.plan = plan
        self.workdir = workdir
        self.db_path = workdir / "continuo.db"
        cores = available_cores()
        self.pinning: dict[str, Any] = {}
        self.cores: dict[str, int | None]
        if pin and len(cores) >= 2:
            self.cores = {"continuo": cores[0], "upstream": cores[1], "loadgen": cores[1]}
        else:
            self.cores = {"continuo": None, "upstream": None, "loadgen": None}
        self.upstream_port = free_port()
        self.continuo_port = free_port()
        self.upstream: Child | None = None
        self.continuo: Child | None = None
        self.results: dict[str, Any] = {}

    # ------------------------------------------------------------------ processes

    @property
    def upstream_url(self) -> str:
        return f"http://127.0.0.1:{self.upstream_port}"

    @property
    def continuo_url(self) -> str:
        return f"http://127.0.0.1:{self.continuo_port}"

    def start(self) -> None:
        plan = self.plan
        self.upstream = Child(
            "upstream",
            [
                python(),
                "-m",
                "benchmarks.upstream",
                "--port",
                str(self.upstream_port),
                "--tokens",
                str(plan.tokens),
                "--slow-interval",
                str(plan.slow_interval),
                "--slow-tokens",
                str(plan.slow_tokens),
            ],
            self.workdir / "upstream.log",
            self.cores["upstream"],
        ).start()
        config = self.workdir / "continuo.toml"
        config.write_text(
            "[database]\n"
            f'url = "sqlite:///{self.db_path}"\n\n'
            "[[providers]]\n"
            'name = "bench"\n'
            'type = "chat_completions"\n'
            f'base_url = "{self.upstream_url}/v1"\n'
            "max_retries = 0\n\n"
            "[[models]]\n"
            'name = "*"\n'
            'provider = "bench"\n'
        )
        self.continuo = Child(
            "continuo",
            [
                python(),
                "-m",
                "continuo",
                "serve",
                "--config",
                str(config),
                "--port",
                str(self.continuo_port),
                "--log-level",
                "warning",
            ],
            self.workdir / "continuo.log",
            self.cores["continuo"],
            env={"PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")},
        ).start()
        self.upstream.wait_healthy(f"{self.upstream_url}/health")
        self.continuo.wait_healthy(f"{self.continuo_url}/healthz")
        if self.cores["loadgen"] is not None:
            os.sched_setaffinity(0, {self.cores["loadgen"]})
        self.pinning = {
            "continuo": {"pid": self.continuo.pid, "core": self.cores["continuo"]},
            "upstream": {"pid": self.upstream.pid, "core": self.cores["upstream"]},
            "loadgen": {"pid": os.getpid(), "core": self.cores["loadgen"]},
        }
        log(
            "pinning: "
            + ", ".join(
                f"{name} pid {v['pid']} -> core {v['core'] if v['core'] is not None else 'any'}"
                for name, v in self.pinning.items()
            )
        )

    def stop(self) -> None:
        for child in (self.continuo, self.upstream):
            if child is not None:
                try:
                    child.stop(grace=10.0)
                except Exception as exc:  # keep stopping the others
                    log(f"could not stop {child.name}: {exc}")

    def check_alive(self) -> None:
        for child in (self.continuo, self.upstream):
            if child is not None and not child.alive():
                raise RuntimeError(f"{child.name} died:\n{child.log_tail()}")

    # ------------------------------------------------------------------ helpers

    def responses_body(
        self, *, store: bool, stream: bool = False, previous: str | None = None, text: str = INPUT, model: str = MODEL
    ) -> bytes:
        body: dict[str, Any] = {"model": model, "input": text, "store": store}
        if stream:
            body["stream"] = True
        if previous is not None:
            body["previous_response_id"] = previous
        return orjson.dumps(body)

    def chat_body(self, messages: list[dict[str, Any]] | None = None, *, stream: bool = False) -> bytes:
        body: dict[str, Any] = {"model": MODEL, "messages": messages or [{"role": "user", "content": INPUT}]}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)

    def cpu_snapshot(self) -> dict[str, Any]:
        """Per process: /proc/<pid>/stat utime+stime and each thread's schedstat (see
        ``cpu_delta``); Continuo's main (event loop) thread on its own."""
        return {
            "continuo": cpu_snapshot(self.continuo_pid),
            "continuo_main": thread_cpu_seconds(self.continuo_pid, self.continuo_pid),
            "upstream": cpu_snapshot(self.upstream_pid),
        }

    def ours(self) -> tuple[float, float]:
        """(CPU seconds the whole machine was busy, CPU seconds of our three processes)."""
        own = sum(cpu_seconds(pid) for pid in (self.continuo_pid, self.upstream_pid, os.getpid()))
        return system_busy_seconds(), own

    def upstream_stats(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.upstream_url}/stats", timeout=5) as response:
            stats: dict[str, int] = orjson.loads(response.read())
            return stats

    async def measured(self, server: str, run: Awaitable[loadgen.Batch]) -> dict[str, Any]:
        """Run one measured batch with the load generator's GC paused; CPU time of the
        server under test (``continuo`` or ``upstream``) per successful request."""
        gc.collect()
        gc.disable()
        try:
            upstream_before = self.upstream_stats()
            ours_before = self.ours()
            before = self.cpu_snapshot()
            batch = await run
            after = self.cpu_snapshot()
            ours_after = self.ours()
            upstream_after = self.upstream_stats()
        finally:
            gc.enable()
        stats = batch.stats()
        ok = len(batch.latencies)

        def per(name: str) -> float | None:
            if not ok:
                return None
            if name == "continuo_main":
                used = after[name] - before[name]
            else:
                used = cpu_delta(
                    self.continuo_pid if name == "continuo" else self.upstream_pid, before[name], after[name]
                )
            return round(float(used) * 1000 / ok, 4)

        stats["server_cpu_ms_per_req"] = per(server)
        # What processes other than ours used meanwhile: a busy machine skews everything.
        foreign = (ours_after[0] - ours_before[0]) - (ours_after[1] - ours_before[1])
        stats["other_processes_cpu_s"] = round(max(foreign, 0.0), 3)
        if server == "continuo":
            stats["main_thread_cpu_ms_per_req"] = per("continuo_main")
            total, main = stats["server_cpu_ms_per_req"], stats["main_thread_cpu_ms_per_req"]
            if total is not None and main is not None:
                stats["other_threads_cpu_ms_per_req"] = round(max(total - main, 0.0), 4)
            stats["upstream_cpu_ms_per_req"] = per("upstream")
            # TCP connections Continuo opened to the upstream (0 when keep-alive holds).
            opened = upstream_after["connections"] - upstream_before["connections"]
            stats["upstream_connections_opened"] = opened - 1  # the /stats request's own
            stats["upstream_requests"] = upstream_after["requests"] - upstream_before["requests"]
        if batch.errors:
            log(f"  {batch.errors} errors, e.g. {batch.error_samples[:2]}")
        self.check_alive()
        return stats

    def db_size(self) -> dict[str, int]:
        """The SQLite file's size after ``PRAGMA wal_checkpoint(TRUNCATE)`` (the WAL is then
        empty), and db + WAL as they were just before."""
        wal = Path(str(self.db_path) + "-wal")
        before = self.db_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
        connection = sqlite3.connect(self.db_path, timeout=30)
        try:
            for _ in range(50):
                busy, _log, _done = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    break
                time.sleep(0.1)
            page_size = connection.execute("PRAGMA page_size").fetchone()[0]
            page_count = connection.execute("PRAGMA page_count").fetchone()[0]
            freelist = connection.execute("PRAGMA freelist_count").fetchone()[0]
        finally:
            connection.close()
        return {
            "db_bytes": self.db_path.stat().st_size,
            "wal_bytes_after": wal.stat().st_size if wal.exists() else 0,
            "db_plus_wal_before_checkpoint": before,
            "page_size": page_size,
            "pages": page_count,
            "free_pages": freelist,
            "checkpoint_busy": int(busy),
        }

    # ------------------------------------------------------------------ scenarios

    async def chains_and_storage(self, client: Any) -> None:
        """One chain, built a turn at a time (store: true). Database size at 0, 1, 10,
        100, 1000 turns; then, per depth, requests chaining on that depth's last id
        (each a branch: the chain itself does not grow), against the same context sent
        to the upstream directly."""
        plan = self.plan
        depths = plan.chain_depths
        deepest = max(depths)
        url = f"{self.continuo_url}/v1/responses"
        ids: dict[int, str] = {}
        sizes: dict[int, dict[str, int]] = {0: self.db_size()}
        build_latency: dict[int, float] = {}
        previous: str | None = None
        log(f"chains: building one chain of {deepest} turns")
        checkpoints = sorted(set(depths) | {d for d in (1, 10, 100, 1000) if d <= deepest})
        start_build = time.perf_counter()
        for turn in range(1, deepest + 1):
            body = self.responses_body(store=True, previous=previous, text=f"Turn {turn}: {INPUT}")
            started = time.perf_counter()
            async with client.post(url, data=body, headers=loadgen.JSON) as response:
                payload = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"chain turn {turn} failed: {response.status} {payload[:300]!r}")
            build_latency[turn] = time.perf_counter() - started
            previous = orjson.loads(payload)["id"]
            if turn in checkpoints:
                ids[turn] = previous
                sizes[turn] = self.db_size()
        build_s = time.perf_counter() - start_build
        log(f"chains: built in {build_s:.1f} s")

        base = sizes[0]["db_bytes"]
        storage: dict[str, Any] = {
            "measure": "main database file after PRAGMA wal_checkpoint(TRUNCATE) (WAL emptied), minus the size "
            "before the first turn",
            "empty_db_bytes": base,
            "turns": {},
        }
        for turns in (t for t in checkpoints if t >= 10):
            grown = sizes[turns]["db_bytes"] - base
            storage["turns"][str(turns)] = {
                "bytes": grown,
                "bytes_per_turn": round(grown / turns, 1),
                "db_plus_wal_before_checkpoint": sizes[turns]["db_plus_wal_before_checkpoint"],
                "pages": sizes[turns]["pages"],
                "free_pages": sizes[turns]["free_pages"],
            }
        self.results["storage"] = storage
        self.results["chain_build"] = {
            "turns": deepest,
            "seconds": round(build_s, 2),
            "turn_latency_ms": {str(d): round(build_latency[d] * 1000, 3) for d in checkpoints},
        }

        # The context a depth-d request sends upstream: every earlier input and output.
        answer = "tok " * plan.tokens
        per_depth: dict[str, Any] = {}
        for depth in depths:
            messages: list[dict[str, Any]] = []
            for turn in range(1, depth + 1):
                messages.append({"role": "user", "content": f"Turn {turn}: {INPUT}"})
                messages.append({"role": "assistant", "content": answer})
            messages.append({"role": "user", "content": INPUT})
            direct = self.chat_body(messages)
            chained = self.responses_body(store=True, previous=ids[depth])
            n = plan.chain_n
            warm = max(5, n // 10)
            up = f"{self.upstream_url}/v1/chat/completions"
            await loadgen.requests(client, up, direct, warm, 1)
            baseline = await self.measured("upstream", loadgen.requests(client, up, direct, n, 1))
            await loadgen.requests(client, url, chained, warm, 1)
            continuo = await self.measured("continuo", loadgen.requests(client, url, chained, n, 1))
            per_depth[str(depth)] = {
                "upstream_messages": len(messages),
                "baseline": baseline,
                "continuo": continuo,
            }
            log(
                f"chains: depth {depth}: direct p50 {baseline['p50_ms']:.2f} ms, continuo p50 "
                f"{continuo['p50_ms']:.2f} ms, {continuo['server_cpu_ms_per_req']} ms CPU/req"
            )
        first = per_depth[str(depths[0])]["continuo"]["p50_ms"]
        for value in per_depth.values():
            value["ratio_to_depth_1"] = round(value["continuo"]["p50_ms"] / first, 3)
            value["added_p50_ms"] = round(value["continuo"]["p50_ms"] - value["baseline"]["p50_ms"], 3)
        self.results["chains"] = {"depths": list(depths), "per_depth": per_depth, "scaling": chain_scaling(per_depth)}

    async def non_streamed(self, client: Any) -> None:
        plan = self.plan
        up = f"{self.upstream_url}/v1/chat/completions"
        url = f"{self.continuo_url}/v1/responses"
        direct = self.chat_body()
        bodies = {"store_true": self.responses_body(store=True), "store_false": self.responses_body(store=False)}
        out: dict[str, dict[str, Any]] = {"baseline": {}, "store_true": {}, "store_false": {}}
        for concurrency in (1, *plan.concurrencies):
            n = plan.c1 if concurrency == 1 else plan.cn
            warm = min(plan.warmup, n)
            key = f"c{concurrency}"
            await loadgen.requests(client, up, direct, warm, concurrency)
            out["baseline"][key] = await self.measured("upstream", loadgen.requests(client, up, direct, n, concurrency))
            for name, body in bodies.items():
                await loadgen.requests(client, url, body, warm, concurrency)
                size_before = self.db_size() if name == "store_true" else None
                stats = await self.measured(
                    "continuo",
                    loadgen.requests(client, url, body, n, concurrency),
                )
                if size_before is not None and stats["ok"]:
                    grown = self.db_size()["db_bytes"] - size_before["db_bytes"]
                    stats["db_bytes_per_stored_response"] = round(grown / stats["ok"], 1)
                out[name][key] = stats
            log(
                f"non-streamed c={concurrency}: direct p50 {out['baseline'][key]['p50_ms']:.2f} ms "
                f"{out['baseline'][key]['per_s']}/s | store:true p50 {out['store_true'][key]['p50_ms']:.2f} ms "
                f"{out['store_true'][key]['per_s']}/s {out['store_true'][key]['server_cpu_ms_per_req']} ms CPU | "
                f"store:false p50 {out['store_false'][key]['p50_ms']:.2f} ms {out['store_false'][key]['per_s']}/s "
                f"{out['store_false'][key]['server_cpu_ms_per_req']} ms CPU"
            )
        self.results["non_streamed"] = out

    async def streamed(self, client: Any) -> None:
        plan = self.plan
        up = f"{self.upstream_url}/v1/chat/completions"
        url = f"{self.continuo_url}/v1/responses"
        direct = self.chat_body(stream=True)
        body = self.responses_body(store=True, stream=True)
        out: dict[str, Any] = {"baseline": {}, "continuo": {}}
        for concurrency, n in ((1, plan.stream_c1), (plan.stream_concurrency, plan.stream_cn)):
            key = f"c{concurrency}"
            warm = min(plan.warmup, n)
            await loadgen.streams(client, up, direct, warm, concurrency, b"[DONE]")
            out["baseline"][key] = await self.measured(
                "upstream",
                loadgen.streams(client, up, direct, n, concurrency, b"[DONE]"),
            )
            await loadgen.streams(client, url, body, warm, concurrency, b"response.completed")
            out["continuo"][key] = await self.measured(
                "continuo",
                loadgen.streams(client, url, body, n, concurrency, b"response.completed"),
            )
            b, c = out["baseline"][key], out["continuo"][key]
            log(
                f"streamed c={concurrency}: direct first {b['first_p50_ms']:.2f} last {b['last_p50_ms']:.2f} ms "
                f"{b['per_s']}/s | continuo first {c['first_p50_ms']:.2f} last {c['last_p50_ms']:.2f} ms "
                f"{c['per_s']}/s {c['server_cpu_ms_per_req']} ms CPU/stream"
            )
        # One stream, counted: the events Continuo sent for a 32-token answer.
        async with client.post(url, data=body, headers=loadgen.JSON) as response:
            raw = await response.read()
        kinds = [line[7:] for line in raw.split(b"\n") if line.startswith(b"event: ")]
        out["events_per_stream"] = len(kinds)
        out["delta_events_per_stream"] = sum(1 for k in kinds if k == b"response.output_text.delta")
        out["tokens"] = plan.tokens
        out["store"] = True
        self.results["streamed"] = out

    async def memory(self) -> None:
        plan = self.plan
        n = plan.memory_streams
        pid = self.continuo_pid
        gc.collect()
        await asyncio.sleep(1.0)
        idle = memory_kib(pid)
        idle_threads = threads(pid)
        url = f"{self.continuo_url}/v1/responses"
        body = self.responses_body(store=True, stream=True, model=SLOW_MODEL, text="Hold this stream open.")
        sample: dict[str, Any] = {}

        async def read(held: loadgen.Held) -> None:
            sample.update(memory_kib(pid))
            sample["threads"] = threads(pid)
            sample["client_connections"] = established_to(self.continuo_port)
            sample["upstream_connections"] = established_to(self.upstream_port)
            sample["stalled"] = held.stalled
            sample["first"] = held.first
            sample["open_s"] = round(held.open_s, 2)

        log(f"memory: opening {n} slow streams at once")
        async with loadgen.session(limit=0, timeout=plan.slow_interval * plan.slow_tokens + 60) as client:
            held = await loadgen.hold_streams(client, url, body, n, read, wait_timeout=120, stall_timeout=5)
        # Let Continuo wind down what the closed streams left (bounded).
        deadline = time.monotonic() + 30
        await asyncio.sleep(2.0)
        while time.monotonic() < deadline:  # until Continuo is idle: < 5% of a core for 0.5 s
            used = cpu_seconds(pid)
            await asyncio.sleep(0.5)
            if cpu_seconds(pid) - used < 0.025:
                break
        after = memory_kib(pid)
        got = sample.get("first", 0)
        self.results["memory"] = {
            "streams": n,
            "streams_with_first_event": got,
            "errors": held.errors,
            "error_samples": held.error_samples,
            "seconds_to_last_first_event": sample.get("open_s"),
            "stalled": sample.get("stalled"),
            "client_connections_open": sample.get("client_connections"),
            "upstream_connections_open": sample.get("upstream_connections"),
            "idle_rss_kib": idle["VmRSS"],
            "rss_with_streams_kib": sample.get("VmRSS"),
            "delta_kib": sample.get("VmRSS", 0) - idle["VmRSS"],
            "kib_per_stream": round((sample.get("VmRSS", 0) - idle["VmRSS"]) / got, 1) if got else None,
            "kib_per_request": round((sample.get("VmRSS", 0) - idle["VmRSS"]) / n, 1),
            "rss_after_close_kib": after["VmRSS"],
            "peak_rss_kib": after["VmHWM"],
            "threads_idle": idle_threads,
            "threads_with_streams": sample.get("threads"),
            "startup_rss_kib": self.results.get("startup_rss_kib"),
        }
        log(
            f"memory: idle {idle['VmRSS'] / 1024:.1f} MiB, with {got}/{n} streams {sample.get('VmRSS', 0) / 1024:.1f} "
            f"MiB, after close {after['VmRSS'] / 1024:.1f} MiB ({held.errors} errors; "
            f"{sample.get('client_connections')} client and {sample.get('upstream_connections')} upstream connections)"
        )
        self.check_alive()

    async def profile(self, client: Any, out_dir: Path, seconds: int = 12) -> None:
        """py-spy on Continuo under store:true load at c=16, in an extra batch after the
        measured ones (sampling slows the process): raw stacks first (summarised into
        hot spots), then a flame graph."""
        spy = find_py_spy()
        if spy is None:
            log("profile: py-spy not found (pip install py-spy); skipped")
            return
        url = f"{self.continuo_url}/v1/responses"
        body = self.responses_body(store=True)
        raw = out_dir / "profile.txt"
        svg = out_dir / "profile.svg"
        requests: dict[str, int] = {}
        for fmt, path in (("raw", raw), ("flamegraph", svg)):
            log(f"profile: py-spy record --format {fmt} on pid {self.continuo_pid} for {seconds} s (store:true, c=16)")
            spy_process = start_py_spy(spy, self.continuo_pid, seconds, fmt, path)
            try:
                await asyncio.sleep(0.5)
                deadline = time.monotonic() + seconds + 5
                while time.monotonic() < deadline and spy_process.poll() is None:
                    batch = await loadgen.requests(client, url, body, 500, 16)
                    requests[fmt] = requests.get(fmt, 0) + len(batch.latencies)
            finally:
                err = await asyncio.to_thread(finish, spy_process)
            if not path.exists():
                log(f"profile: py-spy wrote no {path.name}: {err.decode(errors='replace')[-500:]}")
        busy = await self.busy_snapshots(client, spy)
        if raw.exists():
            self.results["profile"] = {
                "sqlite_busy": busy,
                "seconds": seconds,
                "requests_during": requests.get("raw", 0),
                **report.summarize_profile(raw, rate=250),
            }
            log(f"profile: wrote {raw} and {svg}")

    async def busy_snapshots(self, client: Any, spy: str, dumps: int = 5) -> dict[str, Any] | None:
        """Under store:true load at c=16, ``py-spy dump --native`` a few times and count the
        threads inside SQLite, and those of them sleeping in SQLite's busy handler (waiting
        for another connection's write lock)."""
        url = f"{self.continuo_url}/v1/responses"
        body = self.responses_body(store=True)
        load = asyncio.create_task(loadgen.requests(client, url, body, 100_000, 16))
        seen: list[tuple[int, int, int]] = []
        try:
            await asyncio.sleep(1.0)
            for _ in range(dumps):
                done = await asyncio.to_thread(
                    subprocess.run,
                    [spy, "dump", "--native", "--pid", str(self.continuo_pid)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                blocks = ("\n" + done.stdout).split("\nThread ")[1:]
                if blocks:
                    in_sqlite = [b for b in blocks if "libsqlite3" in b or "sqlite3_" in b]
                    busy = sum("sqlite3InvokeBusyHandler" in b for b in in_sqlite)
                    seen.append((len(blocks), len(in_sqlite), busy))
                await asyncio.sleep(0.5)
        finally:
            load.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load
        if not seen:
            return None
        return {
            "dumps": len(seen),
            "avg_threads": sum(a for a, _, _ in seen) / len(seen),
            "avg_in_sqlite": sum(b for _, b, _ in seen) / len(seen),
            "avg_in_busy_handler": sum(c for _, _, c in seen) / len(seen),
            "samples": seen,
        }

    # ------------------------------------------------------------------ whole run

    @property
    def continuo_pid(self) -> int:
        assert self.continuo is not None
        return self.continuo.pid

    @property
    def upstream_pid(self) -> int:
        assert self.upstream is not None
        return self.upstream.pid

    async def run(self, *, profile_dir: Path | None, skip: set[str]) -> dict[str, Any]:
        self.results["startup_rss_kib"] = memory_kib(self.continuo_pid)["VmRSS"]
        async with loadgen.session(limit=100) as client:
            if "chains" not in skip:
                await self.chains_and_storage(client)
            if "non_streamed" not in skip:
                await self.non_streamed(client)
            if "streamed" not in skip:
                await self.streamed(client)
        if "memory" not in skip:
            await self.memory()
        if profile_dir is not None:
            async with loadgen.session(limit=100) as client:
                await self.profile(client, profile_dir)
        return self.results


def find_py_spy() -> str | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return spy if Path(spy).exists() else None


def start_py_spy(spy: str, pid: int, seconds: int, fmt: str, path: Path) -> subprocess.Popen[bytes]:
    """``py-spy record --gil`` (only the thread holding the GIL) at 250 Hz."""
    argv = [spy, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250", "--gil"]
    return subprocess.Popen(
        [*argv, "--format", fmt, "--output", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def finish(process: subprocess.Popen[bytes], timeout: float = 30) -> bytes:
    """Wait for a child (killing it after ``timeout`` s); its stderr."""
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate(timeout=10)
    return err or b""


def chain_scaling(per_depth: dict[str, Any]) -> dict[str, Any]:
    """How the p50 grows with depth, above depth 1: the exponent k in growth ~ depth^k
    between the two deepest depths (1 is linear), and the p50 added per turn."""
    depths = sorted(int(d) for d in per_depth)
    p50 = {d: per_depth[str(d)]["continuo"]["p50_ms"] for d in depths}
    first = depths[0]
    out: dict[str, Any] = {
        "ms_per_turn": {str(d): round((p50[d] - p50[first]) / (d - first), 4) for d in depths if d != first}
    }
    if len(depths) >= 3:
        a, b = depths[-2], depths[-1]
        grow_a, grow_b = p50[a] - p50[first], p50[b] - p50[first]
        if grow_a > 0 and grow_b > 0:
            exponent = math.log(grow_b / grow_a) / math.log((b - first) / (a - first))
            out["exponent"] = round(exponent, 3)
            out["between"] = [a, b]
            out["linear_or_better"] = exponent <= 1.15
    return out


def source_state() -> dict[str, Any]:
    """Which Continuo was measured: the commit and the files changed on top of it (read-only
    git commands)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.rstrip("\n") if done.returncode == 0 else ""

    status = git("status", "--porcelain", "--", "src", "pyproject.toml")
    changed = [line[3:] for line in status.splitlines() if len(line) > 3]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "uncommitted": changed}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description="Continuo's benchmark.")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 30 seconds")
    parser.add_argument("--profile", action="store_true", help="also run py-spy on Continuo (an extra batch)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json/.png/.md go")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to cores")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (database, logs)")
    parser.add_argument("--skip", action="append", default=[], choices=["chains", "non_streamed", "streamed", "memory"])
    parser.add_argument("--tokens", type=int, help="tokens per streamed answer (default 32)")
    parser.add_argument("--memory-streams", type=int, help="slow streams held open at once (default 1000)")
    parser.add_argument("--max-depth", type=int, help="deepest chain (default 1000; depths are 1, 10, 100, 1000)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.tokens:
        plan.tokens = args.tokens
    if args.memory_streams:
        plan.memory_streams = args.memory_streams
    if args.max_depth:
        plan.chain_depths = tuple(d for d in (1, 10, 100, 1000, 10000) if d <= args.max_depth) or (1,)
    # Enough descriptors for the memory scenario (each child inherits the limit).
    with contextlib.suppress(ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = min(hard, max(soft, plan.memory_streams * 4 + 1024))
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="continuo-bench-"))
    bench = Bench(plan, workdir, pin=not args.no_pin)
    stem = "latest"

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.time()
    log(f"workdir {workdir}; plan: {'quick' if args.quick else 'full'}")
    code = 1
    source = source_state()  # before Continuo starts: the code it loads
    host = machine()  # the load average before anything starts
    try:
        bench.start()
        try:
            import uvloop

            results = uvloop.run(bench.run(profile_dir=args.out if args.profile else None, skip=set(args.skip)))
        except ImportError:
            results = asyncio.run(bench.run(profile_dir=args.out if args.profile else None, skip=set(args.skip)))
        document = {
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": round(time.time() - started, 1),
            "mode": "quick" if args.quick else "full",
            "source": source,
            "machine": host,
            "pinning": bench.pinning,
            "plan": asdict(plan),
            **results,
        }
        from benchmarks import restart

        document["restart"] = restart.measure()  # serve.sh to /healthz 200, nothing to install
        log(f"restart with nothing changed: {document['restart']['median_s']} s (median)")
        document["targets"] = report.targets(document)
        document["quietness"] = report.quietness(document)
        (args.out / f"{stem}.json").write_text(json.dumps(document, indent=2) + "\n")
        markdown = report.markdown(document)
        (args.out / f"{stem}.md").write_text(markdown)
        chart = report.chart(document, args.out / f"{stem}.png")
        print()
        print(markdown)
        log(f"wrote {args.out / (stem + '.json')}, {args.out / (stem + '.md')}" + (f", {chart}" if chart else ""))
        code = 0
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc}); stopping")
        code = 130
    except Exception as exc:
        log(f"benchmark failed: {type(exc).__name__}: {exc}")
        for child in (bench.continuo, bench.upstream):
            if child is not None:
                log(f"--- {child.name} log tail ---\n{child.log_tail()}")
        code = 1
    finally:
        bench.stop()
        if args.keep_tmp or code != 0:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
