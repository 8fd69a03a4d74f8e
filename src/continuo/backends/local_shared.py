"""One embedded model per machine: the workers of ``continuo serve --workers N`` share it.

The supervisor process loads each local provider's model once (an in-process xllamacpp
``Server``: llama.cpp's HTTP server on a random loopback port, locked with a random key)
before uvicorn spawns the workers, and hands the workers each server's address and key in
``$CONTINUO_LOCAL_SERVERS`` (JSON, provider name -> {"address", "key", "model_path"}).

A worker's ``LocalBackend`` then drives that server through ``RemoteServer``, which has the
one method the backend calls on an in-process server, ``handle_chat_completions(body,
callback)``, implemented over HTTP (server-sent events): the same payload, grammar, stream
and cancel code serve both cases. Returning ``True`` from the callback closes the
connection, and llama.cpp cancels the task when it sees the client gone.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

SHARED_ENV = "CONTINUO_LOCAL_SERVERS"


def shared_servers() -> dict[str, dict[str, str]]:
    """The shared servers announced by the supervisor (none outside a worker)."""
    raw = os.environ.get(SHARED_ENV)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def announce(servers: dict[str, dict[str, str]]) -> None:
    """Tell the workers (spawned after this, inheriting the environment) where the models are."""
    os.environ[SHARED_ENV] = json.dumps(servers)


class RemoteServer:
    """llama.cpp's server in another process of this machine, seen as an in-process one."""

    def __init__(self, address: str, key: str, timeout: float = 600.0) -> None:
        self.listening_address = address if address.startswith("http") else f"http://{address}"
        parts = urlsplit(self.listening_address)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._key = key
        self._timeout = timeout

    def handle_chat_completions(self, body: dict[str, Any], callback: Callable[[Any], bool]) -> None:
        """Stream one chat completion: each chunk (or an error body) goes to ``callback``;
        a ``True`` answer stops the generation. Blocking: runs in the stream's thread."""
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        try:
            connection.request(
                "POST",
                "/v1/chat/completions",
                body=json.dumps(body),
                headers={"authorization": f"Bearer {self._key}", "content-type": "application/json"},
            )
            response = connection.getresponse()
            if response.status >= 400:
                try:
                    error = json.loads(response.read() or b"{}")
                except ValueError:
                    error = {}
                if not isinstance(error, dict) or "error" not in error:
                    error = {"error": {"code": response.status, "message": f"HTTP {response.status}"}}
                callback(error)
                return
            for line in response:
                if line.startswith(b"error:"):  # an error after the stream began
                    error = json.loads(line[6:].strip())
                    callback(error if isinstance(error, dict) and "error" in error else {"error": error})
                    return
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                if callback(json.loads(data)):
                    return  # closing the connection cancels the task in llama.cpp
        finally:
            connection.close()
