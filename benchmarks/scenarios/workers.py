"""Workers (issue 18): stored non-streamed requests/s at c=64 with one Continuo worker and
with two (``continuo serve --workers 2``, each on a fresh SQLite file), the scaling ratio
and the errors (none may reach a client: no "database is locked"). Then a model of what N
cores would give: one core's stored requests/s from the measured CPU per request, and the
single SQLite writer's cap from the write lock's hold time per stored response (measured
in-process: BEGIN IMMEDIATE .. COMMIT around the store's own save)."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks import loadgen
from benchmarks.harness import Bench
from benchmarks.plan import log
from benchmarks.procs import cpu_seconds


def _family(pid: int) -> list[int]:
    """A process and all its descendants (the supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        one = todo.pop()
        out.append(one)
        try:
            for task in Path(f"/proc/{one}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _family_cpu(pid: int) -> float:
    total = 0.0
    for one in _family(pid):
        try:
            total += cpu_seconds(one)
        except OSError:
            pass
    return total


async def _point(bench: Bench, client: Any, workers: int) -> dict[str, Any]:
    plan = bench.plan
    config = bench.continuo_config(bench.workdir / f"workers{workers}.db", bench.upstream_url)
    # One worker: pinned like the main Continuo. Two: no pinning (both cores, shared with
    # the load generator and the fake upstream).
    core: int | str | None = "continuo" if workers == 1 else None
    child, base = bench.extra_continuo(f"continuo-w{workers}", config, core=core, args=("--workers", str(workers)))
    try:
        url = f"{base}/v1/responses"
        body = bench.responses_body(store=True)
        c = plan.workers_concurrency
        await loadgen.requests(client, url, body, min(plan.warmup * 2, plan.workers_n), c)
        before = _family_cpu(child.pid)
        batch = await loadgen.requests(client, url, body, plan.workers_n, c)
        used = _family_cpu(child.pid) - before
        stats = batch.stats()
        stats["server_cpu_ms_per_req"] = round(used * 1000 / max(len(batch.latencies), 1), 4)
        stats["processes"] = len(_family(child.pid))
        stats["pinned_core"] = bench.cores["continuo"] if workers == 1 else None
        stats["locked_errors"] = sum(1 for s in batch.error_samples if "locked" in s)
        stats["locked_in_log"] = child.log_tail(1_000_000).count("database is locked")
        if batch.errors:
            log(f"  workers={workers}: {batch.errors} errors, e.g. {batch.error_samples[:2]}")
        if not child.alive():
            raise RuntimeError(f"continuo --workers {workers} died:\n{child.log_tail()}")
        async with client.post(url, data=body, headers=loadgen.JSON) as response:
            sample = orjson.loads(await response.read())
        async with client.get(f"{base}/v1/responses/{sample['id']}/input_items") as response:
            items = orjson.loads(await response.read())["data"]
        stats["_sample"] = (sample, items)
        return stats
    finally:
        bench.stop_extra(child)


async def lock_hold(bench: Bench, response: dict[str, Any], items: list[dict[str, Any]]) -> list[float]:
    """Seconds one stored response holds SQLite's write lock: BEGIN IMMEDIATE .. COMMIT
    around ``responses.save`` (what the store runs per stored response), on a fresh file,
    in this process, uncontended."""
    from continuo.ids import new_id, new_item_id
    from continuo.store.engine import _transaction
    from continuo.store.ops import responses
    from continuo.store.sql import SQLStore

    store = SQLStore(f"sqlite:///{bench.workdir / 'lock.db'}")
    samples: list[float] = []
    await store.open()
    try:
        assert store.sqlite is not None
        for i in range(bench.plan.lock_samples + 50):
            resp = copy.deepcopy(response)
            resp["id"] = new_id("resp")
            for item in resp.get("output", []):
                item["id"] = new_item_id(item.get("type", "message"))
            inputs = [dict(item, id=new_item_id(item.get("type", "message"))) for item in items]
            start = time.perf_counter()
            with _transaction(store.sqlite, write=True) as conn:
                responses.save(conn, "default", resp, inputs)
            if i >= 50:  # the first ones warm the file and the statement cache
                samples.append(time.perf_counter() - start)
    finally:
        await store.close()
    return samples


def writer_model(cpu_ms_per_req: float | None, lock_hold_ms: float | None) -> dict[str, float | None]:
    """Stored requests/s one core gives (from the CPU per request), the single SQLite
    writer's cap (one write lock held ``lock_hold_ms`` per stored response) and the cores
    at which the cap is reached."""
    per_core = 1000 / cpu_ms_per_req if cpu_ms_per_req else None
    writer_cap = 1000 / lock_hold_ms if lock_hold_ms else None
    cores = writer_cap / per_core if per_core and writer_cap else None
    return {
        "per_core_req_s": round(per_core, 1) if per_core else None,
        "writer_cap_req_s": round(writer_cap, 1) if writer_cap else None,
        "cores_to_cap": round(cores, 1) if cores else None,
    }


async def run(bench: Bench, client: Any) -> None:
    plan = bench.plan
    one = await _point(bench, client, 1)
    two = await _point(bench, client, 2)
    response, items = one.pop("_sample")
    two.pop("_sample")
    samples = await lock_hold(bench, response, items)
    hold_p50 = loadgen.percentile(samples, 50) * 1000
    hold_mean = sum(samples) / len(samples) * 1000
    model = writer_model(one["server_cpu_ms_per_req"], hold_mean)
    out = {
        "concurrency": plan.workers_concurrency,
        "one_worker": one,
        "two_workers": two,
        "scaling": round(two["per_s"] / one["per_s"], 3) if one.get("per_s") and two.get("per_s") else None,
        "errors": one["errors"] + two["errors"],
        "lock_hold": {
            "samples": len(samples),
            "p50_ms": round(hold_p50, 4),
            "p99_ms": round(loadgen.percentile(samples, 99) * 1000, 4),
            "mean_ms": round(hold_mean, 4),
        },
        "model": model,
    }
    log(
        f"workers: 1 worker {one['per_s']}/s, 2 workers {two['per_s']}/s ({out['scaling']}x), "
        f"{out['errors']} errors; lock held {hold_mean:.3f} ms per stored response"
    )
    bench.results["workers"] = out
