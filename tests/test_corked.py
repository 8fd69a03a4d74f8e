"""The corked transport under `continuo serve`: writes gathered per turn of the loop,
the same bytes in the same order, nothing held past the turn, nothing lost on close."""

from __future__ import annotations

import asyncio

from continuo.api.corked import CorkedTransport


class Recorder:
    """The socket's side: what reached it, in which calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes | None]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.closing = True
        self.calls.append(("close", None))

    def abort(self) -> None:
        self.closing = True
        self.calls.append(("abort", None))

    def write_eof(self) -> None:
        self.calls.append(("eof", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"info {name}"


async def test_writes_of_one_turn_go_out_in_one_call_in_order():
    recorder = Recorder()
    corked = CorkedTransport(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
    corked.writelines([b"5\r\nhello\r\n", bytearray(b"0\r\n\r\n")])
    assert recorder.calls == [] and corked.get_write_buffer_size() == 34
    await asyncio.sleep(0)  # the end of the turn
    assert recorder.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\n5\r\nhello\r\n0\r\n\r\n")]
    corked.write(b"next")
    await asyncio.sleep(0)
    assert recorder.calls[-1] == ("write", b"next")
    assert corked.get_extra_info("peername") == "info peername"  # the rest passes through


async def test_close_sends_what_is_pending_first_and_abort_drops_it():
    recorder = Recorder()
    corked = CorkedTransport(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"last words")
    corked.close()
    assert recorder.calls == [("write", b"last words"), ("close", None)]
    await asyncio.sleep(0)  # the flush scheduled by the write finds nothing left
    assert len(recorder.calls) == 2

    recorder = Recorder()
    corked = CorkedTransport(recorder, asyncio.get_running_loop())  # type: ignore[arg-type]
    corked.write(b"headers")
    corked.write_eof()
    corked.write(b"dropped")
    corked.abort()
    await asyncio.sleep(0)
    assert recorder.calls == [("write", b"headers"), ("eof", None), ("abort", None)]
