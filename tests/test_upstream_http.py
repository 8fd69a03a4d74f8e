"""The model calls' HTTP client (backends/upstream_http.py) against loopback servers that
answer byte by byte as scripted: framing, reuse, encodings, failures, timeouts, TLS."""

from __future__ import annotations

import asyncio
import datetime
import gzip
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from continuo.backends.upstream_http import (
    BadAnswer,
    BodyTooLarge,
    ConnectFailed,
    Disconnected,
    Pool,
    Upstream,
)

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


def raw(data: bytes) -> Answer:
    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(data)
        await writer.drain()

    return write


def sized(body: bytes, *headers: bytes) -> Answer:
    return raw(
        b"HTTP/1.1 200 OK\r\n%bcontent-length: %d\r\n\r\n%b" % (b"".join(h + b"\r\n" for h in headers), len(body), body)
    )


def chunked(*chunks: bytes, pause: float = 0.0) -> Answer:
    async def write(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for chunk in chunks:
            writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
            await writer.drain()
            if pause:
                await asyncio.sleep(pause)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return write


class Close(Exception):
    """An answer raises it to close the connection once written."""


def then_close(answer: Answer) -> Answer:
    async def write(writer: asyncio.StreamWriter) -> None:
        await answer(writer)
        raise Close

    return write


async def silent(writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(30)


class Scripted:
    """A loopback HTTP/1.1 server: each request it reads gets the next scripted answer."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.connections = 0
        self.closed = 0  # connections that ended (the client closed them, or the script did)
        self.heads: list[bytes] = []
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.heads.append(head)
                self.bodies.append(await reader.readexactly(length))
                await self.answers.pop(0)(writer)
        except (Close, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()


Start = Callable[..., Awaitable[tuple[Scripted, str]]]


async def pooled_connection_lost(pool: Pool) -> None:
    """Until the one pooled connection has seen its close (within 5 s)."""
    [idle] = list(pool._idle.values())
    for _ in range(5000):
        if idle[0].lost:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the pooled connection never saw its close")


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers: list[asyncio.Server] = []

    async def run(*answers: Answer, tls: ssl.SSLContext | None = None) -> tuple[Scripted, str]:
        scripted = Scripted(list(answers))
        server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0, ssl=tls)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return scripted, f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{port}/v1"

    yield run
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_answers_framed_by_length_and_by_chunks_share_one_kept_alive_connection(start: Start) -> None:
    server, url = await start(
        sized(b'{"a": 1}', b"content-type: application/json"), chunked(b"data: 1\n\n", b"data: 2\n\n")
    )
    upstream, pool = Upstream(url, {"content-type": "application/json", "authorization": "Bearer k"}), Pool(5, 5)
    first = await pool.post(upstream, "/chat/completions", b'{"x": 1}')
    assert (first.status, first.headers["content-type"]) == (200, "application/json")
    assert await first.read() == b'{"a": 1}'
    second = await pool.post(upstream, "/chat/completions", b"{}")
    assert await second.read() == b"data: 1\n\ndata: 2\n\n"
    assert server.connections == 1
    head = server.heads[0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert f"Host: 127.0.0.1:{port}\r\n" in head and "authorization: Bearer k\r\n" in head
    assert "Content-Length: 8\r\n" in head and "User-Agent: continuo/" in head
    assert server.bodies == [b'{"x": 1}', b"{}"]
    pool.close()


async def test_a_stream_is_read_as_it_arrives_and_ends_with_empty_bytes(start: Start) -> None:
    _, url = await start(chunked(b"data: a\n\n", b"data: b\n\n", b"data: c\n\n", pause=0.05))
    pool = Pool(5, 5)
    response = await pool.post(Upstream(url, {}), "/responses", b"{}")
    reads = []
    while chunk := await response.readany():
        reads.append(chunk)
    # Read as they came (the server waits between them), not all at the end.
    assert b"".join(reads) == b"data: a\n\ndata: b\n\ndata: c\n\n" and len(reads) >= 2
    assert await response.readany() == b""
    pool.close()


async def test_a_body_ended_by_the_server_closing_is_whole_and_its_connection_not_reused(start: Start) -> None:
    server, url = await start(then_close(raw(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")), sized(b"next"))
    pool, upstream = Pool(5, 5), Upstream(url, {})
    assert await (await pool.post(upstream, "/x", b"")).read() == b"until the end"
    assert await (await pool.post(upstream, "/x", b"")).read() == b"next"
    assert server.connections == 2
    pool.close()


async def test_a_connection_the_server_closed_while_idle_is_replaced(start: Start) -> None:
    server, url = await start(then_close(sized(b"one")), sized(b"two"))
    pool, upstream = Pool(5, 5), Upstream(url, {})
    assert await (await pool.post(upstream, "/x", b"")).read() == b"one"
    await pooled_connection_lost(pool)
    assert await (await pool.post(upstream, "/x", b"")).read() == b"two"
    assert server.connections == 2
    pool.close()


async def test_a_connection_idle_past_the_keepalive_is_not_reused(start: Start) -> None:
    server, url = await start(sized(b"one"), sized(b"two"))
    pool, upstream = Pool(5, 5, keepalive=0.01), Upstream(url, {})
    assert await (await pool.post(upstream, "/x", b"")).read() == b"one"
    await asyncio.sleep(0.05)
    assert await (await pool.post(upstream, "/x", b"")).read() == b"two"
    assert server.connections == 2
    pool.close()


async def test_gzip_and_deflate_bodies_are_decoded(start: Start) -> None:
    import zlib

    _, url = await start(
        sized(gzip.compress(b'{"zipped": true}'), b"content-encoding: gzip"),
        sized(zlib.compress(b'{"deflated": true}'), b"content-encoding: deflate"),
    )
    pool, upstream = Pool(5, 5), Upstream(url, {})
    assert await (await pool.post(upstream, "/x", b"")).read() == b'{"zipped": true}'
    assert await (await pool.post(upstream, "/x", b"")).read() == b'{"deflated": true}'
    pool.close()


async def test_an_encoding_it_cannot_read_is_a_bad_answer_and_its_connection_closed(start: Start) -> None:
    server, url = await start(sized(b"\x00\x01", b"content-encoding: br"), sized(b"plain"))
    pool, upstream = Pool(5, 5), Upstream(url, {})
    with pytest.raises(BadAnswer, match="br"):
        await pool.post(upstream, "/x", b"")
    for _ in range(5000):  # the client closes the connection it cannot use
        if server.closed:
            break
        await asyncio.sleep(0.001)
    assert server.closed == 1
    assert await (await pool.post(upstream, "/x", b"")).read() == b"plain"
    assert server.connections == 2
    pool.close()


async def test_an_interim_answer_is_skipped(start: Start) -> None:
    _, url = await start(
        raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\nx-a: b\r\n\r\nok")
    )
    response = await Pool(5, 5).post(Upstream(url, {}), "/x", b"")
    assert (response.status, response.headers, await response.read()) == (
        201,
        {"content-length": "2", "x-a": "b"},
        b"ok",
    )


async def test_a_connection_closed_mid_body_is_disconnected(start: Start) -> None:
    _, url = await start(then_close(raw(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")))
    response = await Pool(5, 5).post(Upstream(url, {}), "/x", b"")
    with pytest.raises(Disconnected):
        await response.read()


async def test_a_connection_closed_before_the_answer_is_disconnected(start: Start) -> None:
    _, url = await start(then_close(raw(b"")))
    with pytest.raises(Disconnected):
        await Pool(5, 5).post(Upstream(url, {}), "/x", b"")


async def test_bytes_that_are_not_http_are_a_bad_answer(start: Start) -> None:
    _, url = await start(raw(b"SSH-2.0-OpenSSH\r\n\r\n"))
    with pytest.raises(BadAnswer):
        await Pool(5, 5).post(Upstream(url, {}), "/x", b"")


async def test_no_answer_within_the_read_timeout_is_a_timeout(start: Start) -> None:
    _, url = await start(silent)
    with pytest.raises(TimeoutError):
        await Pool(5, 0.2).post(Upstream(url, {}), "/x", b"")


async def test_a_stream_that_goes_quiet_times_out_between_chunks(start: Start) -> None:
    async def stalls(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await asyncio.sleep(30)

    _, url = await start(stalls)
    response = await Pool(5, 0.2).post(Upstream(url, {}), "/x", b"")
    assert await response.readany() == b"first"
    with pytest.raises(TimeoutError):
        await response.readany()
    response.close()


async def test_nothing_listening_is_a_connect_failure() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    with pytest.raises(ConnectFailed):
        await Pool(5, 5).post(Upstream(f"http://127.0.0.1:{port}", {}), "/x", b"")


async def test_a_body_over_the_limit_is_refused_and_its_connection_closed(start: Start) -> None:
    # Refused as soon as the bytes read pass the limit, before the body is over: the
    # connection has unread bytes coming, so it is closed, not reused.
    server, url = await start(chunked(b"x" * 800, b"x" * 800, b"x" * 800, pause=0.05), sized(b"small"))
    pool, upstream = Pool(5, 5), Upstream(url, {})
    with pytest.raises(BodyTooLarge):
        await (await pool.post(upstream, "/x", b"")).read(limit=1000)
    assert await (await pool.post(upstream, "/x", b"")).read() == b"small"
    assert server.connections == 2
    pool.close()


async def test_a_large_body_read_slowly_arrives_whole(start: Start) -> None:
    # Over the client's buffer bound (1 MiB), read behind: reading pauses and resumes.
    chunks = [bytes([65 + n % 26]) * 65536 for n in range(64)]
    _, url = await start(chunked(*chunks))
    response = await Pool(5, 5).post(Upstream(url, {}), "/x", b"")
    got = []
    while chunk := await response.readany():
        got.append(chunk)
        await asyncio.sleep(0.01)
    assert b"".join(got) == b"".join(chunks)


async def test_tls_with_the_default_certificate_checks(
    start: Start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert_path, key_path)
    _, url = await start(sized(b"secret"), tls=server_tls)
    # Not trusted: the default checks refuse it.
    with pytest.raises(ConnectFailed, match="SSL"):
        await Pool(5, 5).post(Upstream(url, {}), "/x", b"")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_path))  # trusted by the default context
    _, url = await start(sized(b"secret"), tls=server_tls)
    assert await (await Pool(5, 5).post(Upstream(url, {}), "/x", b"")).read() == b"secret"


async def test_a_provider_that_redirects_is_a_502_that_says_where(start: Start) -> None:
    from continuo.backends.base import UpstreamError
    from continuo.backends.http import HTTPProvider
    from continuo.config import ProviderConfig

    _, url = await start(
        raw(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: https://elsewhere/v1\r\ncontent-length: 0\r\n\r\n")
    )
    provider = HTTPProvider(ProviderConfig(name="moved", type="chat_completions", base_url=url))
    with pytest.raises(UpstreamError) as refused:
        await provider.post("/chat/completions", {"model": "m"})
    assert refused.value.status == 502
    assert "answered 307, a redirect to https://elsewhere/v1" in refused.value.message
    await provider.aclose()


async def test_an_answer_in_an_unknown_encoding_is_a_502_that_names_it(start: Start) -> None:
    from continuo.backends.base import UpstreamError
    from continuo.backends.http import HTTPProvider
    from continuo.config import ProviderConfig

    _, url = await start(sized(b"\x00", b"content-encoding: zstd"))
    provider = HTTPProvider(ProviderConfig(name="odd", type="chat_completions", base_url=url))
    with pytest.raises(UpstreamError) as refused:
        await provider.post("/chat/completions", {"model": "m"})
    assert refused.value.status == 502 and "unreadable" in refused.value.message and "zstd" in refused.value.message
    await provider.aclose()


async def test_a_head_past_its_bound_is_a_bad_answer(start: Start) -> None:
    _, url = await start(raw(b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"p" * 70_000 + b"\r\ncontent-length: 0\r\n\r\n"))
    with pytest.raises(BadAnswer, match="head is over"):
        await Pool(5, 5).post(Upstream(url, {}), "/x", b"")


async def test_bytes_sent_to_an_idle_connection_close_it(start: Start) -> None:
    async def answer_twice(writer: asyncio.StreamWriter) -> None:
        await sized(b"one")(writer)
        await asyncio.sleep(0.05)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray")  # nobody asked
        await writer.drain()

    server, url = await start(answer_twice, sized(b"two"))
    pool, upstream = Pool(5, 5), Upstream(url, {})
    assert await (await pool.post(upstream, "/x", b"")).read() == b"one"
    await pooled_connection_lost(pool)
    assert await (await pool.post(upstream, "/x", b"")).read() == b"two"  # not the stray answer
    assert server.connections == 2
    pool.close()


async def test_a_connection_left_idle_past_the_keepalive_is_closed_while_another_is_reused(start: Start) -> None:
    async def slow(writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(0.05)
        await sized(b"slow")(writer)

    server, url = await start(slow, slow, *[sized(b"steady")] * 17)  # one left: the server keeps its side open
    pool, upstream = Pool(5, 5, keepalive=0.5), Upstream(url, {})
    # Two calls at once: two connections, both pooled afterwards.
    for response in await asyncio.gather(pool.post(upstream, "/x", b""), pool.post(upstream, "/x", b"")):
        assert await response.read() == b"slow"
    # Then one call at a time, for longer than the keepalive: each reuses the newest
    # connection, and the other one, idle all along, is closed when one comes back.
    for _ in range(16):
        assert await (await pool.post(upstream, "/x", b"")).read() == b"steady"
        await asyncio.sleep(0.05)
    assert server.connections == 2 and server.closed == 1
    pool.close()
