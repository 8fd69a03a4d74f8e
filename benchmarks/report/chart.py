"""The chart (latest.png), with matplotlib when it is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import CPU_TARGET_MS, machine_line


def chart(doc: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)")
        return None
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    fig.suptitle(f"Continuo benchmark ({doc['mode']}, {doc['generated_at']})\n{machine_line(doc)[:160]}", fontsize=9)
    colors = {"direct": "#999999", "store:true": "#1f77b4", "store:false": "#ff7f0e", "continuo": "#1f77b4"}
    ns = doc.get("non_streamed")
    plan = doc["plan"]
    if ns:
        series = {"direct": ns["baseline"], "store:true": ns["store_true"], "store:false": ns["store_false"]}
        _bars(axes[0][0], series, [("c1", "p50_ms", "p50 c=1"), ("c1", "p99_ms", "p99 c=1")], colors, "ms")
        axes[0][0].set_title("Non-streamed latency, c=1")
        keys = [f"c{c}" for c in plan["concurrencies"]]
        _bars(axes[0][1], series, [(k, "per_s", k.replace("c", "c=")) for k in keys], colors, "requests/s")
        axes[0][1].set_title("Non-streamed throughput")
        _bars(
            axes[0][2],
            series,
            [(k, "server_cpu_ms_per_req", k.replace("c", "c=")) for k in ("c1", *keys)],
            colors,
            "ms CPU / request",
        )
        axes[0][2].axhline(CPU_TARGET_MS, color="red", linestyle="--", linewidth=1, label="1 ms target")
        axes[0][2].legend(fontsize=8)
        axes[0][2].set_title("Server CPU per request (direct = fake upstream)")
    st = doc.get("streamed")
    if st:
        series = {"direct": st["baseline"], "continuo": st["continuo"]}
        _bars(
            axes[1][0],
            series,
            [
                ("c1", "first_p50_ms", "first p50"),
                ("c1", "first_p99_ms", "first p99"),
                ("c1", "last_p50_ms", "last p50"),
                ("c1", "last_p99_ms", "last p99"),
            ],
            colors,
            "ms",
        )
        cn = f"c{plan['stream_concurrency']}"
        axes[1][0].set_title(
            f"Streamed ({st['tokens']} tokens), c=1; streams/s at c={plan['stream_concurrency']}: "
            f"{st['baseline'][cn]['per_s']} direct, {st['continuo'][cn]['per_s']} Continuo",
            fontsize=9,
        )
    ch = doc.get("chains")
    if ch:
        depths = ch["depths"]
        ax = axes[1][1]
        ax.plot(
            depths,
            [ch["per_depth"][str(d)]["baseline"]["p50_ms"] for d in depths],
            "o-",
            color="#999999",
            label="direct (same messages)",
        )
        ax.plot(
            depths,
            [ch["per_depth"][str(d)]["continuo"]["p50_ms"] for d in depths],
            "o-",
            color="#1f77b4",
            label="Continuo",
        )
        first = ch["per_depth"][str(depths[0])]["continuo"]["p50_ms"]
        ax.plot(depths, [first * d for d in depths], ":", color="red", linewidth=1, label="linear from depth 1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("chain depth (turns)")
        ax.set_ylabel("p50 ms")
        ax.set_title("Chained request latency, c=1")
        ax.legend(fontsize=8)
    storage = doc.get("storage")
    ax = axes[1][2]
    if storage:
        turns = [int(t) for t in storage["turns"]]
        ax.plot(turns, [storage["turns"][str(t)]["bytes"] for t in turns], "o-", label="bytes")
        first_per = storage["turns"][str(min(turns))]["bytes_per_turn"]
        ax.plot(turns, [first_per * t for t in turns], ":", color="red", linewidth=1, label="linear")
        ax.legend(fontsize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("turns in the chain")
        ax.set_ylabel("bytes (after checkpoint)")
        per = storage["turns"][str(max(turns))]["bytes_per_turn"]
        title = f"SQLite size of one chain ({per:,.0f} B/turn at {max(turns):,})"
        mem = doc.get("memory")
        if mem and mem.get("rss_with_streams_kib"):
            title += (
                f"\nRSS idle {mem['idle_rss_kib'] / 1024:.0f} MiB -> {mem['rss_with_streams_kib'] / 1024:.0f} MiB "
                f"with {mem['streams_with_first_event']:,} streams"
            )
        ax.set_title(title, fontsize=9)
    for row in axes:
        for axis in row:
            axis.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _bars(
    ax: Any, series: dict[str, dict[str, Any]], metrics: list[tuple[str, str, str]], colors: dict[str, str], ylabel: str
) -> None:
    width = 0.8 / len(series)
    for i, (name, data) in enumerate(series.items()):
        values = [data.get(point, {}).get(metric) or 0 for point, metric, _ in metrics]
        positions = [j + i * width for j in range(len(metrics))]
        bars = ax.bar(positions, values, width, label=name, color=colors.get(name))
        ax.bar_label(bars, labels=[f"{v:.3g}" for v in values], fontsize=7)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(metrics))])
    ax.set_xticklabels([label for _, _, label in metrics], fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
