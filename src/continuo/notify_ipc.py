"""Wake-ups across the processes that share one SQLite file (``--workers``, or servers
started side by side on one machine), through Unix datagram sockets.

Every process binds one socket in a directory named after the database file; a
notification is the channel name, sent to every other socket there. As with PostgreSQL's
``LISTEN/NOTIFY``, a notification is only a hint: readers always read the store and also
wake on a timeout, so a lost datagram costs latency, never data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import time
from pathlib import Path

from continuo.notify import LocalNotifier

log = logging.getLogger("continuo")

# How long the list of peers is trusted before the directory is read again.
PEERS_TTL = 1.0


def wake_directory(database_path: str) -> Path:
    """One directory per database file (by its absolute path), short enough for a Unix
    socket path."""
    digest = hashlib.sha256(os.path.abspath(database_path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"continuo-wake-{digest}"


class SocketNotifier(LocalNotifier):
    def __init__(self, database_path: str) -> None:
        super().__init__()
        self.directory = wake_directory(database_path)
        self.path: Path | None = None
        self.sock: socket.socket | None = None
        self._peers: list[str] = []
        self._peers_read = 0.0

    async def start(self) -> None:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        self.path = self.directory / f"{os.getpid()}-{os.urandom(4).hex()}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        sock.setblocking(False)
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._received)

    def _received(self) -> None:
        assert self.sock is not None
        while True:
            try:
                payload = self.sock.recv(512)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.wake(payload.decode("utf-8", "replace"))

    def _read_peers(self) -> list[str]:
        now = time.monotonic()
        if now - self._peers_read > PEERS_TTL:
            own = self.path.name if self.path is not None else ""
            try:
                self._peers = [str(self.directory / n) for n in os.listdir(self.directory) if n != own]
            except FileNotFoundError:
                self._peers = []
            self._peers_read = now
        return self._peers

    async def notify(self, channel: str) -> None:
        self.wake(channel)
        if self.sock is None:
            return
        payload = channel.encode()
        for peer in self._read_peers():
            try:
                self.sock.sendto(payload, peer)
            except (ConnectionRefusedError, FileNotFoundError):
                # A process that died without cleaning up: its socket is stale.
                with contextlib.suppress(OSError):
                    os.unlink(peer)
                self._peers_read = 0.0
            except (BlockingIOError, OSError):
                pass  # a peer that is not reading is woken by its timeout instead

    async def stop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            with contextlib.suppress(OSError):
                self.directory.rmdir()  # only when no other process is there
