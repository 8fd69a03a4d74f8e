"""Profile (``--profile`` only, after the measured batches): py-spy on Continuo under
`store: true` load at c=16, and ``py-spy dump --native`` snapshots counting the threads
inside SQLite and asleep in its busy handler."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import loadgen, report
from benchmarks.harness import Bench
from benchmarks.plan import log


async def run(bench: Bench, client: Any, out_dir: Path, seconds: int = 12) -> None:
    """py-spy on Continuo under store:true load at c=16, in an extra batch after the
    measured ones (sampling slows the process): raw stacks first (summarised into
    hot spots), then a flame graph."""
    spy = find_py_spy()
    if spy is None:
        log("profile: py-spy not found (pip install py-spy); skipped")
        return
    url = f"{bench.continuo_url}/v1/responses"
    body = bench.responses_body(store=True)
    raw = out_dir / "profile.txt"
    svg = out_dir / "profile.svg"
    requests: dict[str, int] = {}
    for fmt, path in (("raw", raw), ("flamegraph", svg)):
        log(f"profile: py-spy record --format {fmt} on pid {bench.continuo_pid} for {seconds} s (store:true, c=16)")
        spy_process = start_py_spy(spy, bench.continuo_pid, seconds, fmt, path)
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
    busy = await busy_snapshots(bench, client, spy)
    if raw.exists():
        bench.results["profile"] = {
            "sqlite_busy": busy,
            "seconds": seconds,
            "requests_during": requests.get("raw", 0),
            **report.summarize_profile(raw, rate=250),
        }
        log(f"profile: wrote {raw} and {svg}")


async def busy_snapshots(bench: Bench, client: Any, spy: str, dumps: int = 5) -> dict[str, Any] | None:
    """Under store:true load at c=16, ``py-spy dump --native`` a few times and count the
    threads inside SQLite, and those of them sleeping in SQLite's busy handler (waiting
    for another connection's write lock)."""
    url = f"{bench.continuo_url}/v1/responses"
    body = bench.responses_body(store=True)
    load = asyncio.create_task(loadgen.requests(client, url, body, 100_000, 16))
    seen: list[tuple[int, int, int]] = []
    try:
        await asyncio.sleep(1.0)
        for _ in range(dumps):
            done = await asyncio.to_thread(
                subprocess.run,
                [spy, "dump", "--native", "--pid", str(bench.continuo_pid)],
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
