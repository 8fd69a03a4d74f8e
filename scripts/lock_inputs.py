"""Prints a digest of what the locks are made from: pyproject.toml's build requirements,
dependencies and locked extras, and the lock script. requirements/inputs.sha256 holds it
as of the last `scripts/lock.sh`; tests/test_lock.py fails when they differ."""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKED_EXTRAS = ("local", "otel", "dev")


def digest(root: Path = ROOT) -> str:
    project = tomllib.loads((root / "pyproject.toml").read_text())
    inputs = {
        "build": project["build-system"]["requires"],
        "python": project["project"]["requires-python"],
        "dependencies": project["project"]["dependencies"],
        "extras": {name: project["project"]["optional-dependencies"][name] for name in LOCKED_EXTRAS},
        "script": (root / "scripts" / "lock.sh").read_text(),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


if __name__ == "__main__":
    sys.stdout.write(digest() + "\n")
