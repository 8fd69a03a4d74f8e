"""Group commit on SQLite: saves that arrive in the same turn of the event loop share one
transaction, and so one commit.

A commit writes every page the transaction changed to the WAL, and the saves of one
moment change the same pages (the ends of the tables and indexes: ids begin with the
time), so k saves committed together write far fewer pages than k commits. The first save
of a turn still commits at once, so a lone request (c=1) waits for nothing and pays only a
flag and a ``call_soon``; a save that comes later in that turn joins a group that commits
at the end of the turn (``call_soon``), each member in a savepoint of its own: one
member's error rolls back only that member, and its caller gets the error as if it had
written alone. At c=16 the benchmark's saves came 4.3 to a group, and a stored request
made 12.75 ``pwrite64`` calls instead of 21 (docs/performance.md).

Whatever stops the group as a whole (the write lock held by a worker thread, another
process writing the file, a failed commit) hands every member back to be written alone on
the usual path (``RETRY``), which waits or moves to a thread as any write does.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from typing import Any


class _Retry:
    """The member was not written: write it alone."""


RETRY = _Retry()

Member = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class CommitGroup:
    """The saves of the current loop turn (``raw`` forms over the loop's sqlite3
    connection), and whether a save has committed in this turn already."""

    def __init__(self, raw: Callable[[], sqlite3.Connection], write_lock: threading.Lock) -> None:
        self._raw = raw
        self._write_lock = write_lock
        self._members: list[Member] = []
        self._turn_taken = False

    def first_of_turn(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether no save has been written in this turn yet; if so the turn is now taken
        (the caller writes at once)."""
        if self._turn_taken:
            return False
        self._turn_taken = True
        loop.call_soon(self._end_turn)
        return True

    def _end_turn(self) -> None:
        self._turn_taken = False

    def join(
        self, loop: asyncio.AbstractEventLoop, form: Callable[..., Any], args: tuple[Any, ...]
    ) -> asyncio.Future[Any]:
        """The future of ``form(raw, *args)`` written with the rest of this turn's group:
        its result, its error, or ``RETRY``."""
        future = loop.create_future()
        if not self._members:
            loop.call_soon(self._commit)
        self._members.append((form, args, future))
        return future

    def _commit(self) -> None:
        members, self._members = self._members, []
        if not self._write_lock.acquire(blocking=False):
            _settle(members, None)
            return
        try:
            outcomes = self._write(members)
        finally:
            self._write_lock.release()
        _settle(members, outcomes)

    def _write(self, members: list[Member]) -> list[tuple[Any, BaseException | None]] | None:
        raw = self._raw()
        try:
            raw.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:  # another process writes: each waits its turn alone
            return None
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            for form, args, _ in members:
                raw.execute("SAVEPOINT member")
                try:
                    outcomes.append((form(raw, *args), None))
                except Exception as exc:
                    raw.execute("ROLLBACK TO member")
                    outcomes.append((None, exc))
                raw.execute("RELEASE member")
            raw.commit()
        except sqlite3.Error:
            raw.rollback()
            return None
        return outcomes


def _settle(members: list[Member], outcomes: list[tuple[Any, BaseException | None]] | None) -> None:
    for index, (_, _, future) in enumerate(members):
        if future.done():
            continue
        if outcomes is None:
            future.set_result(RETRY)
            continue
        value, error = outcomes[index]
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)
