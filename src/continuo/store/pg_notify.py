"""Wake-ups across replicas through PostgreSQL ``LISTEN/NOTIFY``.

One listening connection per replica; a notification carries only a channel name (a
response id, "queue" or "cancel"), and wakes that channel's local waiters. Readers never
depend on it for correctness: they read the store and also wake on timeouts.
"""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from continuo.notify import LocalNotifier

log = logging.getLogger("continuo")

CHANNEL = "continuo"


def asyncpg_dsn(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


class PostgresNotifier(LocalNotifier):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.dsn = asyncpg_dsn(url)
        self.listener: Any = None
        self.sender: Any = None

    async def start(self) -> None:
        self.listener = await asyncpg.connect(self.dsn)
        await self.listener.add_listener(CHANNEL, self._received)
        self.sender = await asyncpg.create_pool(self.dsn, min_size=1, max_size=4)

    def _received(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        self.wake(payload)

    async def notify(self, channel: str) -> None:
        self.wake(channel)
        try:
            await self.sender.execute("SELECT pg_notify($1, $2)", CHANNEL, channel)
        except Exception:  # a lost hint only costs latency
            log.warning("could not notify other replicas about %s", channel, exc_info=True)

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.close()
        if self.sender is not None:
            await self.sender.close()
