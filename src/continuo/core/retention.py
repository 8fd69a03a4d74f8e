"""Retention: stored responses and idle conversations are deleted once their project's
``retain_days`` have passed.

One sweeper runs at a time among every worker and replica sharing the database: a sweep
starts only under the lease row ``retention``, and each of its batches renews that lease
in its own transaction, so a process that lost the lease (it stalled past it and another
took over) stops at its next batch instead of sweeping alongside. The lease outlives a
sweep by a little more than the interval, so the same process keeps sweeping while it
lives; another takes over once it stops (it gives the lease back) or dies (the lease runs
out).

A sweep deletes exactly what ``DELETE /v1/responses/{id}`` deletes, in batches of at
most ``batch`` rows, each its own short transaction (on SQLite in a worker thread, never
on the event loop), with the loop free to serve requests between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from continuo.config import Config
from continuo.ids import new_id
from continuo.observability import metrics

log = logging.getLogger("continuo")

LEASE = "retention"
DAY_US = 86_400 * 1_000_000


def _micros() -> int:
    return time.time_ns() // 1000


class RetentionStore(Protocol):
    async def take_lease(self, name: str, owner: str, until_us: int) -> bool: ...

    async def release_lease(self, name: str, owner: str) -> None: ...

    async def retention_projects(self) -> list[str]: ...

    async def expire_responses(
        self, lease: tuple[str, str, int], project: str, before_us: int, batch: int
    ) -> tuple[int, int] | None:
        """Delete one batch: (responses deleted, rows deleted), (0, 0) when nothing is
        left, None when the lease is not ours."""

    async def expire_conversations(
        self, lease: tuple[str, str, int], project: str, before_us: int, batch: int
    ) -> tuple[int, int] | None: ...


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each project keeps what it stored: ``projects`` overrides ``default``;
    None or 0 keeps it until it is deleted."""

    default: float | None = None
    projects: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> RetentionPolicy:
        own = {p.name: p.retain_days for p in config.projects if p.retain_days is not None}
        return cls(config.server.retain_days, own)

    def days(self, project: str) -> float | None:
        days = self.projects.get(project, self.default)
        return days or None

    @property
    def active(self) -> bool:
        return bool(self.default) or any(self.projects.values())


@dataclass(slots=True)
class Sweep:
    """What one sweep did."""

    held: bool = False  # whether this process held the lease
    responses: int = 0
    conversations: int = 0
    rows: int = 0
    batches: int = 0
    lost: bool = False  # another process took the lease during the sweep


class RetentionSweeper:
    def __init__(self, store: RetentionStore, policy: RetentionPolicy, *, interval: float, batch: int) -> None:
        self.store = store
        self.policy = policy
        self.interval = interval
        self.batch = batch
        self.owner = new_id("sweeper")[:32]
        # Long enough to outlast the pause between two sweeps of the holder.
        self.lease_us = int((2 * interval + 30) * 1_000_000)
        self.task: asyncio.Task[None] | None = None
        self.total = Sweep()  # everything this process swept, for tests and logs
        self.passes = 0  # sweeps this process finished while holding the lease

    async def start(self) -> None:
        if self.policy.active:
            self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is None:
            return
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.task = None
        try:
            await self.store.release_lease(LEASE, self.owner)
        except Exception:
            log.warning("retention: could not give the sweeper lease back; it runs out by itself", exc_info=True)

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention sweep failed; trying again at the next interval")
            await asyncio.sleep(self.interval)

    def _lease(self) -> tuple[str, str, int]:
        return LEASE, self.owner, _micros() + self.lease_us

    async def _targets(self) -> list[tuple[str, float]]:
        if self.policy.default:
            candidates = await self.store.retention_projects()
        else:
            candidates = list(self.policy.projects)
        return [(project, days) for project in candidates if (days := self.policy.days(project)) is not None]

    async def sweep(self) -> Sweep:
        """One pass over every project with a retention, when this process holds the lease."""
        done = Sweep()
        if not await self.store.take_lease(*self._lease()):
            return done
        done.held = True
        now = _micros()
        for project, days in await self._targets():
            before = now - int(days * DAY_US)
            for kind in ("responses", "conversations"):
                if not await self._expire(kind, project, before, done):
                    done.lost = True
                    log.info("retention: another process took over the sweep")
                    return done
        self.passes += 1
        if done.responses or done.conversations:
            log.info(
                "retention: deleted %d responses and %d conversations (%d rows, %d batches)",
                done.responses,
                done.conversations,
                done.rows,
                done.batches,
            )
        return done

    async def _expire(self, kind: str, project: str, before: int, done: Sweep) -> bool:
        """Batches of one kind until none is left; False when the lease was lost."""
        expire = self.store.expire_responses if kind == "responses" else self.store.expire_conversations
        while True:
            outcome = await expire(self._lease(), project, before, self.batch)
            if outcome is None:
                return False
            deleted, rows = outcome
            if not rows:
                return True
            done.batches += 1
            done.rows += rows
            self.total.batches += 1
            self.total.rows += rows
            if kind == "responses":
                done.responses += deleted
                self.total.responses += deleted
            else:
                done.conversations += deleted
                self.total.conversations += deleted
            metrics.RETENTION_DELETED.labels(kind).inc(deleted)
            # Requests waiting on the loop (or for the write lock) go first.
            await asyncio.sleep(0)
