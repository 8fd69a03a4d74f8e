"""Server-Sent Events as they cross the wire: a POST over a plain socket, its chunks parsed."""

from __future__ import annotations

import socket

import orjson


def raw_sse(port: int, body: dict) -> tuple[str, list[bytes]]:
    """POST over a plain socket and return the head and the HTTP chunks as sent."""
    payload = orjson.dumps(body)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            b"POST /v1/responses HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    chunks = []
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        rest = rest[size + 2 :]
    return head.decode(), chunks


def parse(chunks: list[bytes]) -> list[dict]:
    events = []
    for chunk in chunks:
        assert chunk.endswith(b"\n\n") and b"\r" not in chunk
        lines = chunk[:-2].split(b"\n")
        assert len(lines) == 2 and lines[0].startswith(b"event: ") and lines[1].startswith(b"data: ")
        event = orjson.loads(lines[1][6:])
        assert lines[0][7:].decode() == event["type"]
        events.append(event)
    return events
