"""Real HTTP servers on 127.0.0.1 for the tests: an ASGI app under uvicorn in a thread.

Every app but a fake upstream is served through ``wire.record``, so what it answers on
``/v1/responses...`` is checked against the specs when the test ends (tests/conftest.py).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from continuo.api.corked import CorkedHttpToolsProtocol
from tests.support import wire


def is_fake_upstream(app: Any) -> bool:
    return bool(getattr(getattr(app, "state", None), "fake_upstream", False))


class ServerThread:
    def __init__(self, app: Any, http: Any = None) -> None:
        """``http``: uvicorn's HTTP protocol; by default the one ``continuo serve`` uses
        for Continuo (its corked protocol), uvicorn's own choice for a fake upstream."""
        self.app = app
        self.recorder = None if is_fake_upstream(app) else wire.record(app)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        served = app if self.recorder is None else self.recorder
        if http is None:
            http = "auto" if self.recorder is None else CorkedHttpToolsProtocol
        config = uvicorn.Config(
            served, loop="uvloop", http=http, log_level="warning", lifespan="on", timeout_graceful_shutdown=5
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        if self.recorder is not None:
            self.recorder.url = self.url

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        if self.recorder is not None:
            self.recorder.running = True
        return self

    def stop(self) -> None:
        if self.recorder is not None:
            # Fetch the stored copies the contract compares while the server still answers.
            wire.settle([e for e in wire.LOG.since(0) if e.recorder is self.recorder])
            self.recorder.running = False
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
