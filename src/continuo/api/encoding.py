"""Compressed request bodies (``Content-Encoding: gzip`` or ``zstd``, as Codex may send).

Decompressed in bounded steps: the body-size limit applies to the decompressed bytes, and
a body that would grow past it is refused as soon as it does (a 413), so a small
compressed bomb never takes more memory than the limit.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

import zstandard

from continuo.errors import APIError, InvalidRequest

STEP = 1 << 16
ENCODINGS = ("identity", "gzip", "x-gzip", "zstd")


def encoding_of(header: str | None) -> str:
    value = (header or "identity").strip().lower()
    if value not in ENCODINGS:
        raise APIError(
            f"Unsupported Content-Encoding '{value[:40]}': send identity, gzip or zstd.",
            status=415,
            type="invalid_request_error",
            code="unsupported_content_encoding",
        )
    return value


def decompress(body: bytes, encoding: str, limit: int, too_large: Callable[[int], APIError]) -> bytes:
    if encoding == "identity":
        return body
    try:
        if encoding == "zstd":
            return _zstd(body, limit, too_large)
        return _gzip(body, limit, too_large)
    except (zlib.error, zstandard.ZstdError, EOFError):
        raise InvalidRequest(
            f"The request body could not be decompressed as {encoding}.", code="invalid_body"
        ) from None


def _gzip(body: bytes, limit: int, too_large: Callable[[int], APIError]) -> bytes:
    out = bytearray()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = body
    while data and not inflater.eof:
        out += inflater.decompress(data, STEP)
        if len(out) > limit:
            raise too_large(limit)
        data = inflater.unconsumed_tail
    if not inflater.eof:
        raise zlib.error("truncated")
    return bytes(out)


def _zstd(body: bytes, limit: int, too_large: Callable[[int], APIError]) -> bytes:
    out = bytearray()
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body)) as reader:
        while chunk := reader.read(STEP):
            out += chunk
            if len(out) > limit:
                raise too_large(limit)
    return bytes(out)
