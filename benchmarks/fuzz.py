"""The long fuzz run: requests generated from OpenAI's create-request schema plus targeted
mutations, on SQLite and PostgreSQL, asserting that no answer is a 5xx.

The test suite runs the same fuzz tests with 1,000 examples per test and database (about
3,000 to 4,000 requests per database); this runs them with 3,400, which makes more than
10,000 requests per database (about 8 minutes on 2 cores):

    .venv/bin/python -m benchmarks.fuzz [--examples N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=3400, help="examples per fuzz test and database")
    args = parser.parse_args(argv)
    env = {**os.environ, "CONTINUO_FUZZ_EXAMPLES": str(args.examples)}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fuzz_schema.py"],
        cwd=ROOT,
        env=env,
        check=False,
    )
    seconds = time.monotonic() - started
    print(f"fuzz: {args.examples} examples per test and database, {seconds:.0f} s, exit {result.returncode}")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
