"""The ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from continuo.api.errors import EXCEPTION_HANDLERS
from continuo.api.routes import ROUTES
from continuo.backends import create_backend
from continuo.config import Config
from continuo.core.background import BackgroundRunner
from continuo.core.notify import LocalNotifier
from continuo.core.routing import Router
from continuo.core.service import ResponsesService
from continuo.store.pg_notify import PostgresNotifier
from continuo.store.sql import SQLStore


def create_app(config: Config) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = SQLStore(config.database.url, migrate=config.database.migrate, pool_size=config.database.pool_size)
        await store.open()
        router = Router(config, create_backend)
        notifier = LocalNotifier() if store.is_sqlite else PostgresNotifier(config.database.url)
        await notifier.start()
        background = BackgroundRunner(store, router, notifier, config.background)
        await background.start(single_replica=store.is_sqlite)
        service = ResponsesService(store, router, notifier, background)
        app.state.config = config
        app.state.service = service
        try:
            yield
        finally:
            # Foreground requests have drained by now (the server waits for them).
            await background.stop()
            await service.aclose()
            await notifier.stop()
            await router.aclose()
            await store.close()

    return Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
