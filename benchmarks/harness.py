"""The benchmark's harness: starts the fake upstream and Continuo (pinned, on a fresh
SQLite file), stops them whatever happens, builds request bodies, and measures a batch
(CPU of the server under test, other processes' CPU, upstream connections) and the
database's size. The scenarios (``benchmarks/scenarios``) drive it."""

from __future__ import annotations

import gc
import os
import sqlite3
import time
import urllib.request
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import orjson

from benchmarks import loadgen
from benchmarks.plan import INPUT, MODEL, ROOT, Plan, log
from benchmarks.procs import (
    Child,
    available_cores,
    cpu_delta,
    cpu_seconds,
    cpu_snapshot,
    free_port,
    python,
    system_busy_seconds,
    thread_cpu_seconds,
)


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
        # The deepest chain built so far: (turns, id of its last response).
        self.chain_tip: tuple[int, str] | None = None
        self.extras: list[Child] = []  # other children a scenario started (stopped by ``stop``)

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
        config.write_text(self.continuo_config(self.db_path, self.upstream_url))
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

    @staticmethod
    def continuo_config(db_path: Path, upstream_url: str, extra: str = "") -> str:
        """The benchmark's Continuo config: one SQLite file, one upstream for every model."""
        return (
            extra + "[database]\n"
            f'url = "sqlite:///{db_path}"\n\n'
            "[[providers]]\n"
            'name = "bench"\n'
            'type = "chat_completions"\n'
            f'base_url = "{upstream_url}/v1"\n'
            "max_retries = 0\n\n"
            "[[models]]\n"
            'name = "*"\n'
            'provider = "bench"\n'
        )

    def extra_continuo(
        self, name: str, config: str, core: int | str | None = "continuo", args: tuple[str, ...] = ()
    ) -> tuple[Child, str]:
        """Another Continuo (for the workers and MCP scenarios) with a config of its own in
        the workdir, pinned like the main one unless ``core`` says otherwise (None: any);
        stopped by ``stop``. Returns the child and its base URL."""
        path = self.workdir / f"{name}.toml"
        path.write_text(config)
        port = free_port()
        child = Child(
            name,
            [
                python(),
                "-m",
                "continuo",
                "serve",
                "--config",
                str(path),
                "--port",
                str(port),
                "--log-level",
                "warning",
                *args,
            ],
            self.workdir / f"{name}.log",
            self.cores["continuo"] if core == "continuo" else (core if isinstance(core, int) else None),
            env={"PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")},
        ).start()
        self.extras.append(child)
        url = f"http://127.0.0.1:{port}"
        child.wait_healthy(f"{url}/healthz")
        return child, url

    def stop_extra(self, child: Child) -> None:
        child.stop(grace=10.0)
        if child in self.extras:
            self.extras.remove(child)

    def stop(self) -> None:
        for child in (*self.extras, self.continuo, self.upstream):
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

    @property
    def continuo_pid(self) -> int:
        assert self.continuo is not None
        return self.continuo.pid

    @property
    def upstream_pid(self) -> int:
        assert self.upstream is not None
        return self.upstream.pid
