"""Continuo's benchmark: one command, everything against a direct-to-upstream baseline
measured in the same run.

    .venv/bin/python -m benchmarks.run            # full run, a few minutes
    .venv/bin/python -m benchmarks.run --quick    # smoke run, about 30 s
    .venv/bin/python -m benchmarks.run --profile  # also py-spy Continuo on an extra batch

It starts the fast fake upstream (``benchmarks/upstream.py``) and Continuo as processes
of their own, pinned to different cores, on a fresh SQLite file in a temporary folder
(``benchmarks/harness.py``); runs the scenarios (``benchmarks/scenarios``, see
docs/benchmarks.md); writes ``benchmarks/results/latest.json``, ``latest.png`` and
``latest.md`` (``benchmarks/report``); prints the Markdown table; and stops everything
it started, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks import loadgen, report
from benchmarks.harness import Bench
from benchmarks.plan import QUICK, RESULTS, ROOT, Plan, log
from benchmarks.procs import machine, memory_kib
from benchmarks.scenarios import (
    chains,
    conversations,
    mcp,
    memory,
    non_streamed,
    paging,
    profile,
    streamed,
    websocket,
    workers,
)

SCENARIOS = ["chains", "non_streamed", "streamed", "memory", "paging", "conversations", "websocket", "mcp", "workers"]


async def run_all(bench: Bench, *, profile_dir: Path | None, skip: set[str]) -> dict[str, Any]:
    """The scenarios in order, on one Continuo process. Paging comes after memory, so that
    the figures of the others (the idle RSS included) are taken as before it existed."""
    bench.results["startup_rss_kib"] = memory_kib(bench.continuo_pid)["VmRSS"]
    async with loadgen.session(limit=100) as client:
        if "chains" not in skip:
            await chains.run(bench, client)
        if "non_streamed" not in skip:
            await non_streamed.run(bench, client)
        if "streamed" not in skip:
            await streamed.run(bench, client)
    if "memory" not in skip:
        await memory.run(bench)
    if "paging" not in skip:
        async with loadgen.session(limit=100) as client:
            await paging.run(bench, client)
    # Added later (issues 12, 14, 15, 18): after the others, so that their figures are
    # taken as before these existed.
    async with loadgen.session(limit=100) as client:
        if "conversations" not in skip:
            await conversations.run(bench, client)
        if "websocket" not in skip:
            await websocket.run(bench, client)
        if "mcp" not in skip:
            await mcp.run(bench, client)
        if "workers" not in skip:
            await workers.run(bench, client)
    if profile_dir is not None:
        async with loadgen.session(limit=100) as client:
            await profile.run(bench, client, profile_dir)
    return bench.results


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
    parser.add_argument("--skip", action="append", default=[], choices=SCENARIOS)
    parser.add_argument("--tokens", type=int, help="tokens per streamed answer (default 32)")
    parser.add_argument("--memory-streams", type=int, help="slow streams held open at once (default 1000)")
    parser.add_argument("--max-depth", type=int, help="deepest chain (default 1000; depths are 1, 10, 100, 1000)")
    parser.add_argument("--paging-depth", type=int, help="turns in the chain the paging client reads (default 5000)")
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
    if args.paging_depth:
        plan.paging_depth = args.paging_depth
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

            results = uvloop.run(run_all(bench, profile_dir=args.out if args.profile else None, skip=set(args.skip)))
        except ImportError:
            results = asyncio.run(run_all(bench, profile_dir=args.out if args.profile else None, skip=set(args.skip)))
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
