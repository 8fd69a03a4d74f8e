"""Instructions per request, counted by valgrind's callgrind: a measure that a busy or
throttled machine does not move, for comparing code bases (or a change) within a few
per cent where CPU time wanders by 15% between runs.

    .venv/bin/python -m benchmarks.instructions [--cases u1,u16,s1,s16,us16,ss16] [--n 100] [ROOT ...]

Each ROOT is a Continuo checkout (default: this one); its ``src`` is what runs. The fake
upstream runs natively; Continuo runs under callgrind with instrumentation off until the
warm-up is done, then each measured batch is counted on its own (``callgrind_control``:
zero, instrument, run, dump). Cases: ``u``/``s`` for ``store: false``/``true``, a leading
``s`` or ``u`` before ``s16`` for a 32-token stream (``us16``: unstored; ``--tokens`` sets the length), the number the
concurrency. Figures are thousands of instructions per request in user space, every
thread included (SQLite's worker threads too); system calls themselves are not counted.
``--keep DIR`` keeps the dumps (one file per thread) for ``callgrind_annotate``.
Needs valgrind (Debian's ``valgrind`` package); nothing else in the project uses it.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import ROOT, Plan
from benchmarks.procs import Child, free_port, python

# name: (store, stream, concurrency)
CASES = {
    "u1": (False, False, 1),
    "u16": (False, False, 16),
    "s1": (True, False, 1),
    "s16": (True, False, 16),
    "us16": (False, True, 16),
    "ss16": (True, True, 16),
}


def _totals(path: str) -> int:
    found = 0
    with open(path) as lines:
        for line in lines:
            if line.startswith("totals:"):
                found = int(line.split()[1])
    return found


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], capture_output=True, check=False)


def _start(root: Path, upstream: str) -> tuple[Child, Path, str, str]:
    """Continuo from ``root`` under callgrind, instrumentation off: the process, its folder,
    its URL and where callgrind dumps."""
    workdir = Path(tempfile.mkdtemp(prefix="continuo-instr-"))
    config = workdir / "continuo.toml"
    config.write_text(Bench.continuo_config(workdir / "continuo.db", upstream))
    port = free_port()
    out = str(workdir / "callgrind.out")
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    command += [python(), "-m", "continuo", "serve", "--config", str(config), "--port", str(port)]
    command += ["--log-level", "warning"]
    server = Child("continuo", command, workdir / "continuo.log", None, env={"PYTHONPATH": str(root / "src")})
    url = f"http://127.0.0.1:{port}"
    server.start().wait_healthy(f"{url}/healthz", timeout=600)  # valgrind starts it slowly
    return server, workdir, url, out


async def _measure(
    root: Path, upstream: str, cases: list[str], n: int, reps: int, keep: Path | None = None
) -> dict[str, list[float]]:
    server, workdir, url, out = _start(root, upstream)
    found: dict[str, list[float]] = {}
    bench = Bench(Plan(), workdir, pin=False)
    try:
        async with loadgen.session(limit=100) as client:
            for case in cases:
                store, stream, concurrency = CASES[case]
                body = bench.responses_body(store=store, stream=stream)

                async def batch(count: int, body: bytes = body, stream: bool = stream, c: int = concurrency) -> Any:
                    target = f"{url}/v1/responses"
                    if stream:
                        return await loadgen.streams(client, target, body, count, c, b"response.completed")
                    return await loadgen.requests(client, target, body, count, c)

                await batch(50)  # warm, uncounted
                for _ in range(reps):
                    _control("-z", str(server.pid))
                    _control("-i", "on", str(server.pid))
                    await batch(n)
                    _control("-i", "off", str(server.pid))
                    before = set(glob.glob(out + ".*"))
                    _control("-d", str(server.pid))
                    dumped = set(glob.glob(out + ".*")) - before
                    found.setdefault(case, []).append(sum(_totals(p) for p in dumped) / n / 1000)
                    for number, path in enumerate(sorted(dumped)):
                        if keep is not None:
                            os.replace(path, keep / f"{root.name}.{case}.{number}.callgrind")
                        else:
                            os.remove(path)
                print(f"{root} {case}: {[round(v, 1) for v in found[case]]}", flush=True)
    finally:
        server.stop(grace=60)
    return found


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[ROOT])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--n", type=int, default=100, help="requests per counted batch")
    parser.add_argument("--reps", type=int, default=2, help="counted batches per case (the least is shown)")
    parser.add_argument("--tokens", type=int, default=32, help="tokens of each streamed answer")
    parser.add_argument("--keep", type=Path, help="keep callgrind's dumps in this folder, for callgrind_annotate")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [python(), "-m", "benchmarks.upstream", "--port", str(port), "--tokens", str(args.tokens)]
    upstream = Child("upstream", argv, Path(tempfile.mkdtemp(prefix="continuo-instr-")) / "upstream.log", None)
    upstream.start().wait_healthy(f"http://127.0.0.1:{port}/health")
    results = {}
    try:
        for root in args.roots:
            results[root] = await _measure(
                root.resolve(), f"http://127.0.0.1:{port}", cases, args.n, args.reps, args.keep
            )
    finally:
        upstream.stop()
    print("\nthousands of instructions per request (least of the batches)")
    print("| case | " + " | ".join(str(root) for root in args.roots) + " |")
    print("|---|" + "---:|" * len(args.roots))
    for case in cases:
        print(f"| {case} | " + " | ".join(f"{min(results[root][case]):.0f}" for root in args.roots) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
