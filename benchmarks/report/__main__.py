"""``python -m benchmarks.report [FILE.json]``: render the tables and the chart again."""

from __future__ import annotations

from pathlib import Path

from benchmarks.report.chart import chart
from benchmarks.report.tables import markdown, quietness, targets


def main(argv: list[str] | None = None) -> int:
    """Re-render latest.md and latest.png from a results JSON (after changing this file)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("json", type=Path, nargs="?", default=Path(__file__).parent.parent / "results" / "latest.json")
    args = parser.parse_args(argv)
    doc = json.loads(args.json.read_text())
    doc["targets"] = targets(doc)
    doc["quietness"] = quietness(doc)
    args.json.write_text(json.dumps(doc, indent=2) + "\n")
    text = markdown(doc)
    args.json.with_suffix(".md").write_text(text)
    chart(doc, args.json.with_suffix(".png"))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
