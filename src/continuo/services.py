"""The application's wiring: store, notifier, backends, driver, runner and service, made
from the configuration and closed in order. The HTTP layer only receives the result."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from continuo.backends import create_backend
from continuo.config import Config
from continuo.core.background import BackgroundRunner
from continuo.core.compaction import Compactor
from continuo.core.conversations import ConversationService
from continuo.core.driver import RunDriver
from continuo.core.fetch import Fetcher
from continuo.core.keys import KeyRing
from continuo.core.limits import LimitCounts, Limiter
from continuo.core.listing import ResponseListing
from continuo.core.long_context import LongContextService
from continuo.core.mcp import MCPClients
from continuo.core.retention import RetentionPolicy, RetentionSweeper
from continuo.core.routing import Router
from continuo.core.sealing import load_sealer
from continuo.core.service import ResponsesService
from continuo.core.tokens import TokenCounter
from continuo.core.window import Window
from continuo.notify import Notifier
from continuo.notify_ipc import SocketNotifier
from continuo.store.pg_notify import PostgresNotifier
from continuo.store.redis_limits import RedisLimitCounts
from continuo.store.sql import SQLStore

log = logging.getLogger("continuo")


@dataclass(slots=True)
class Services:
    config: Config
    store: SQLStore
    notifier: Notifier
    router: Router
    fetcher: Fetcher
    background: BackgroundRunner
    service: ResponsesService
    keyring: KeyRing
    limiter: Limiter
    conversations: ConversationService
    long_context: LongContextService
    retention: RetentionSweeper
    listing: ResponseListing

    @classmethod
    async def open(cls, config: Config) -> Services:
        store = SQLStore(config.database.url, migrate=config.database.migrate, pool_size=config.database.pool_size)
        await store.open()
        router = Router(config, create_backend)
        notifier: Notifier = (
            SocketNotifier(store.sqlite_path) if store.is_sqlite else PostgresNotifier(config.database.url)
        )
        await notifier.start()
        fetcher = Fetcher(config.security)
        driver = RunDriver(router, fetcher, MCPClients(config.mcp, config.mcp_servers, fetcher))
        counter = TokenCounter()
        compactor = Compactor(driver, counter, await load_sealer(store, config.security.compaction_key_env))
        driver.window = Window(counter, compactor)
        long_context = LongContextService(store, driver, driver.window, compactor, config.limits.max_input_items)
        background = BackgroundRunner(store, driver, notifier, config.background)
        await background.start()
        service = ResponsesService(store, driver, notifier, background, max_input_items=config.limits.max_input_items)
        keyring = KeyRing(
            store, config.keys, reopen_without_active_keys=config.security.reopen_without_active_keys
        )
        if not await keyring.required():
            log.warning("no API key is configured: the server is open to anyone who can reach it")
        counts: LimitCounts = store if config.limits.redis_url is None else RedisLimitCounts(config.limits.redis_url)
        limiter = Limiter(config.limits, counts)
        retention = RetentionSweeper(
            store,
            RetentionPolicy.from_config(config),
            interval=config.server.retention_interval,
            batch=config.server.retention_batch,
        )
        await retention.start()
        return cls(
            config,
            store,
            notifier,
            router,
            fetcher,
            background,
            service,
            keyring,
            limiter,
            ConversationService(store),
            long_context,
            retention,
            ResponseListing(store),
        )

    async def aclose(self) -> None:
        # Foreground requests have drained by now (the server waits for them).
        await self.retention.stop()
        await self.background.stop()
        await self.limiter.aclose()
        if isinstance(self.limiter.counts, RedisLimitCounts):
            await self.limiter.counts.aclose()
        await self.service.aclose()
        await self.notifier.stop()
        await self.fetcher.aclose()
        await self.router.aclose()
        await self.store.close()
