"""A restart with nothing changed: from running ``scripts/serve.sh`` to ``/healthz``
answering 200, when the install is already up to date (so the time is the install check
plus the server's own start). ``python -m benchmarks.restart`` prints it alone;
``benchmarks.run`` records it as ``restart``."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.procs import free_port

ROOT = Path(__file__).resolve().parent.parent


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def measure(repeats: int = 3) -> dict[str, Any]:
    subprocess.run([str(ROOT / "scripts" / "install.sh")], check=True)  # up to date before timing
    with tempfile.TemporaryDirectory(prefix="continuo-restart-") as tmp:
        config = Path(tmp) / "continuo.toml"
        config.write_text(f'[database]\nurl = "sqlite:///{tmp}/restart.db"\n')
        seconds = []
        for _ in range(repeats):
            port = free_port()
            started = time.perf_counter()
            child = subprocess.Popen(
                [str(ROOT / "scripts" / "serve.sh"), "--config", str(config), "--port", str(port)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                while not _healthy(f"http://127.0.0.1:{port}"):
                    if child.poll() is not None or time.perf_counter() - started > 60:
                        raise RuntimeError("serve.sh did not become healthy")
                    time.sleep(0.01)
                seconds.append(time.perf_counter() - started)
            finally:
                os.killpg(child.pid, signal.SIGTERM)
                child.wait(timeout=30)
    median = round(statistics.median(seconds), 3)
    return {"repeats": repeats, "seconds": [round(s, 3) for s in seconds], "median_s": median}


if __name__ == "__main__":
    json.dump(measure(), sys.stdout, indent=2)
    sys.stdout.write("\n")
