"""The ASGI application."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from continuo.api.auth import AuthMiddleware
from continuo.api.errors import EXCEPTION_HANDLERS
from continuo.api.observe import ObserveMiddleware
from continuo.api.routes import ROUTES
from continuo.backends import create_backend
from continuo.config import Config
from continuo.core.background import BackgroundRunner
from continuo.core.fetch import Fetcher
from continuo.core.keys import KeyRing
from continuo.core.limits import Limiter
from continuo.core.notify import LocalNotifier
from continuo.core.routing import Router
from continuo.core.service import ResponsesService
from continuo.store.pg_notify import PostgresNotifier
from continuo.store.sql import SQLStore

log = logging.getLogger("continuo")


def create_app(config: Config) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = SQLStore(config.database.url, migrate=config.database.migrate, pool_size=config.database.pool_size)
        await store.open()
        router = Router(config, create_backend)
        notifier = LocalNotifier() if store.is_sqlite else PostgresNotifier(config.database.url)
        await notifier.start()
        fetcher = Fetcher(config.security)
        background = BackgroundRunner(store, router, notifier, config.background, fetcher)
        await background.start(single_replica=store.is_sqlite)
        service = ResponsesService(
            store, router, notifier, background, max_input_items=config.limits.max_input_items, fetcher=fetcher
        )
        keyring = KeyRing(store, config.keys)
        if not await keyring.required():
            log.warning("no API key is configured: the server is open to anyone who can reach it")
        app.state.config = config
        app.state.service = service
        app.state.keyring = keyring
        app.state.limiter = Limiter(config.limits)
        try:
            yield
        finally:
            # Foreground requests have drained by now (the server waits for them).
            await background.stop()
            await service.aclose()
            await notifier.stop()
            await fetcher.aclose()
            await router.aclose()
            await store.close()

    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.add_middleware(AuthMiddleware)
    app.add_middleware(ObserveMiddleware)  # outermost: ids, metrics and spans for every answer, 401s included
    return app
