"""The request being served, as seen from anywhere below the HTTP layer (a contextvar:
tasks started while serving a request see it too)."""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass

from continuo.ids import new_id

_CLIENT_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


@dataclass(slots=True)
class RequestContext:
    request_id: str
    model: str = ""
    upstream_seconds: float = 0.0
    upstream_calls: int = 0


_current: ContextVar[RequestContext | None] = ContextVar("continuo_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


def request_id_from(header: str | None) -> str:
    """The client's own request id when it sent a sane one, else a fresh one."""
    if header is not None and _CLIENT_ID.fullmatch(header):
        return header
    return new_id("req")
