"""The ASGI application."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from continuo.api.auth import AuthMiddleware
from continuo.api.errors import EXCEPTION_HANDLERS
from continuo.api.observe import ObserveMiddleware
from continuo.api.routes import CREATE_ROUTE, ROUTES, DirectCreate
from continuo.api.websocket import responses_socket
from continuo.config import Config, load_config
from continuo.services import Services

GC_YOUNG_THRESHOLD = 50_000


class AppState(State):
    """``app.state`` whose attributes are plain instance attributes as well. Starlette's
    ``State`` keeps them in a dictionary and finds each through ``__getattr__``, which
    Python calls only after a failed lookup has built an AttributeError: five of those a
    request, for the service, the key ring, the limiter and the configuration."""

    def __setattr__(self, key: str, value: object) -> None:
        super().__setattr__(key, value)
        object.__setattr__(self, key, value)

    def __delattr__(self, key: str) -> None:
        super().__delattr__(key)
        object.__delattr__(self, key)


class _App(Starlette):
    # ``POST /v1/responses`` inside the same outer layers as every other request (the
    # server-error handler, then the app's middlewares), without the router and the
    # ``ExceptionMiddleware``: built with the main stack (routes.DirectCreate).
    _direct_create: ASGIApp | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        app: ASGIApp = DirectCreate(CREATE_ROUTE)
        handler = self.exception_handlers.get(Exception)  # as Starlette's own stack has it
        outer = [Middleware(ServerErrorMiddleware, handler=handler, debug=self.debug), *self.user_middleware]
        for cls, args, kwargs in reversed(outer):
            app = cls(app, *args, **kwargs)
        self._direct_create = app
        return stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The server's own send, for the body of a stream: once an answer has started, the
        # middlewares' send wrappers have nothing left to see (api/responses.py). Taken out
        # again at the end: uvicorn's send is a method of the request's cycle, which holds
        # the scope, and that loop would leave every request to the cyclic GC.
        scope["continuo.body_send"] = send
        try:
            direct = self._direct_create
            if (
                direct is not None
                and scope["type"] == "http"
                and scope["path"] == "/v1/responses"
                and scope["method"] == "POST"
            ):
                scope["app"] = self
                await direct(scope, receive, send)
            else:
                await super().__call__(scope, receive, send)
        finally:
            del scope["continuo.body_send"]


def create_app(config: Config, *, freeze: bool = False) -> Starlette:
    """The app on ``config``. ``freeze``: a server process's own app (``continuo serve``),
    which moves what its startup built out of the cyclic collector's sight; not for
    apps started inside another program (the tests), whose other objects it would pin."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = await Services.open(config)
        app.state.config = config
        app.state.service = services.service
        app.state.long_context = services.long_context
        app.state.keyring = services.keyring
        app.state.limiter = services.limiter
        app.state.conversations = services.conversations
        app.state.retention = services.retention
        app.state.listing = services.listing
        # What startup built (modules, configuration, pools) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it all again.
        # Requests leave no reference cycles (tests/test_gc_cycles.py), so the young
        # generation is collected after 50,000 allocations instead of 700: its passes
        # found nothing and cost 6% of a request's instructions (docs/performance.md).
        if freeze:
            gc.collect()
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD)
        try:
            yield
        finally:
            await services.aclose()

    routes = [*ROUTES, WebSocketRoute("/v1/responses", responses_socket)]
    app = _App(routes=routes, exception_handlers=EXCEPTION_HANDLERS, lifespan=lifespan)
    app.state = AppState()
    app.router.redirect_slashes = False  # a bodyless 307 is not an OpenAI-shaped answer
    app.add_middleware(AuthMiddleware)
    app.add_middleware(ObserveMiddleware)  # outermost: ids, metrics and spans for every answer, 401s included
    return app


def worker_app() -> Starlette:
    """The app of one worker of ``continuo serve --workers N``: the configuration from
    ``$CONTINUO_CONFIG``; migrations already ran in the supervisor."""
    from continuo.observability import setup_logging, setup_tracing

    config = load_config()
    config.database.migrate = False
    setup_logging(config.logging.format, os.environ.get("CONTINUO_LOG_LEVEL") or config.logging.level)
    setup_tracing()
    return create_app(config, freeze=True)
