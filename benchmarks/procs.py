"""Child processes for the benchmark: start (pinned to a core), wait until healthy, read
their CPU time and memory from /proc, and stop them, always."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def available_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # After "pid (comm) ": state is field 3, utime 14 and stime 15 (1-based) -> 11, 12 here.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle, not waiting for I/O), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / CLK_TCK


def thread_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """On-CPU time in nanosecond resolution from /proc/<pid>/task/<tid>/schedstat: of one
    thread, or summed over the process's live threads (time of threads that already
    exited is not in it: use ``cpu_seconds`` for a whole multi-threaded process)."""
    tids = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    total = 0
    for one in tids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/task/{one}/schedstat").read_text().split()[0])
    return total / 1e9


def thread_times(pid: int) -> dict[int, int]:
    """On-CPU nanoseconds of each live thread (schedstat)."""
    out: dict[int, int] = {}
    for name in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            out[int(name)] = int(Path(f"/proc/{pid}/task/{name}/schedstat").read_text().split()[0])
    return out


def cpu_delta(pid: int, before: tuple[float, dict[int, int]], after: tuple[float, dict[int, int]]) -> float:
    """Seconds of CPU a process used between two ``cpu_snapshot``s: summed per thread in
    nanoseconds when no thread exited in between, else from /proc/<pid>/stat ticks."""
    (stat_a, threads_a), (stat_b, threads_b) = before, after
    if set(threads_a) <= set(threads_b):
        return sum(ns - threads_a.get(tid, 0) for tid, ns in threads_b.items()) / 1e9
    return stat_b - stat_a


def cpu_snapshot(pid: int) -> tuple[float, dict[int, int]]:
    return cpu_seconds(pid), thread_times(pid)


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) in KiB, from /proc/<pid>/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def established_to(port: int) -> int:
    """Established IPv4 TCP connections on this machine whose remote end is 127.0.0.1:port."""
    wanted = f"0100007F:{port:04X}"
    count = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 3 and fields[2] == wanted and fields[3] == "01":
                count += 1
    return count


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def machine() -> dict[str, object]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_available": len(available_cores()),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "loadavg_at_start": _loadavg(),
    }


def _loadavg() -> str | None:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return None


def _die_with_parent() -> None:
    """Linux: SIGTERM this child if the benchmark process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Child:
    """One child process, pinned to ``core`` (when given) before it runs any code."""

    def __init__(self, name: str, argv: list[str], log_path: Path, core: int | None, env: dict[str, str] | None = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.core = core
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Child:
        core = self.core

        def pin() -> None:
            if core is not None:
                os.sched_setaffinity(0, {core})
            _die_with_parent()

        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})},
                preexec_fn=pin,
            )
        finally:
            log.close()
        return self

    def wait_healthy(self, url: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early (code {self.process.returncode}):\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become healthy at {url}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=10)


def python() -> str:
    return sys.executable
