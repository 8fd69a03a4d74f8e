"""Which backend serves a requested model name, and under which upstream name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from continuo.backends.base import Backend
from continuo.config import Config, ProviderConfig
from continuo.errors import InvalidRequest
from continuo.observability import observe_backend

_OBSERVED_KEPT = 1024


@dataclass(slots=True)
class Route:
    backend: Backend
    provider: ProviderConfig
    upstream_model: str
    # The model's context window when configured (``[[models]] context_window``).
    context_window: int | None = None


class Router:
    def __init__(self, config: Config, factory: Callable[[ProviderConfig], Backend]) -> None:
        self.backends = {p.name: factory(p) for p in config.providers}
        providers = {p.name: p for p in config.providers}
        self.routes = {
            m.name: (self.backends[m.provider], providers[m.provider], m.upstream_model, m.context_window)
            for m in config.models
        }
        # Each model name's observed backend, made once (the catch-all route takes any
        # name, so only so many are kept).
        self._observed: dict[str, Backend] = {}

    def _lookup(self, model: str) -> tuple[Backend, ProviderConfig, str | None, int | None] | None:
        return self.routes.get(model) or self.routes.get("*")

    def _entry(self, model: str) -> tuple[Backend, ProviderConfig, str | None, int | None]:
        route = self._lookup(model)
        if route is None:
            raise InvalidRequest(
                f"The model '{model}' does not exist or is not served here.",
                param="model",
                code="model_not_found",
            )
        return route

    def check(self, model: str) -> None:
        """The 400 an unknown model gets, without building a route (nothing to call yet)."""
        self._entry(model)

    def resolve(self, model: str) -> Route:
        backend, provider, upstream, window = self._entry(model)
        observed = self._observed.get(model)
        if observed is None:
            observed = observe_backend(backend, provider.name, model)
            if len(self._observed) < _OBSERVED_KEPT:
                self._observed[model] = observed
        return Route(observed, provider, upstream or model, window)

    def model_names(self) -> list[str]:
        """The names to list: every configured one (not "*"), and the name of each
        embedded (local) provider that is served only through "*"."""
        names = [name for name in self.routes if name != "*"]
        catch_all = self.routes.get("*")
        if catch_all is not None and catch_all[1].type == "local" and catch_all[1].name not in names:
            names.append(catch_all[1].name)
        return names

    def provider_name(self, model: str) -> str | None:
        """The name of the provider a request for ``model`` goes to (None: not served)."""
        route = self._lookup(model)
        return None if route is None else route[1].name

    def serves(self, model: str) -> bool:
        """Whether a request for ``model`` would be routed (any name, with a "*")."""
        return model in self.routes or "*" in self.routes

    async def aclose(self) -> None:
        for backend in self.backends.values():
            await backend.aclose()
