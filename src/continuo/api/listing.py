"""The console's routes: ``GET /v1/responses`` (list, filter, search) and
``GET /v1/responses/{id}/graph``. Continuo's own: OpenAI has no route that lists responses."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from continuo.api import params
from continuo.api.responses import json_response
from continuo.core.listing import ResponseListing
from continuo.core.status import Status
from continuo.errors import InvalidRequest
from continuo.store.base import ResponseQuery

MAX_METADATA_FILTERS = 16
MAX_QUERY_CHARS = 1000
# The latest second whose microseconds still fit the 64-bit time columns.
MAX_SECONDS = (2**63 - 1) // 1_000_000
STATUSES = tuple(status.value for status in Status)


def _listing(request: Request) -> ResponseListing:
    listing: ResponseListing = request.app.state.listing
    return listing


def _text(request: Request, name: str) -> str | None:
    """A text parameter; absent when not given or empty (a form's blank field)."""
    value = request.query_params.get(name)
    return value or None


def _seconds(request: Request, name: str) -> int | None:
    raw = _text(request, name)
    return None if raw is None else params.bounded_int(raw, name, MAX_SECONDS, "an integer (unix seconds)")


def _background(request: Request) -> bool | None:
    raw = _text(request, "background")
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise InvalidRequest(
            f"Invalid value: '{raw[:40]}'. Supported values are: 'true', 'false'.",
            param="background",
            code="invalid_value",
        )
    return raw == "true"


def _status(request: Request) -> str | None:
    raw = _text(request, "status")
    if raw is not None and raw not in STATUSES:
        supported = ", ".join(f"'{s}'" for s in STATUSES)
        raise InvalidRequest(
            f"Invalid value: '{raw[:40]}'. Supported values are: {supported}.", param="status", code="invalid_value"
        )
    return raw


def _metadata(request: Request) -> list[tuple[str, str]]:
    found = []
    for name, value in request.query_params.multi_items():
        if not name.startswith("metadata"):
            continue
        key = name[len("metadata[") : -1]
        if not (name.startswith("metadata[") and name.endswith("]") and key):
            raise InvalidRequest(
                f"Invalid parameter '{name[:80]}': filter on metadata as metadata[KEY]=VALUE.",
                param="metadata",
                code="invalid_value",
            )
        found.append((key, value))
    if len(found) > MAX_METADATA_FILTERS:
        raise InvalidRequest(
            f"Too many metadata filters: at most {MAX_METADATA_FILTERS}.", param="metadata", code="invalid_value"
        )
    return found


def _q(request: Request) -> str | None:
    value = _text(request, "q")
    if value is not None and len(value) > MAX_QUERY_CHARS:
        raise InvalidRequest(
            f"Invalid 'q': at most {MAX_QUERY_CHARS} characters, got {len(value)}.", param="q", code="invalid_value"
        )
    return value


def query(request: Request) -> ResponseQuery:
    after, before = _text(request, "after"), _text(request, "before")
    if after is not None and before is not None:
        raise InvalidRequest("Pass 'after' or 'before', not both.", param="before", code="invalid_value")
    return ResponseQuery(
        limit=params.limit(request),
        ascending=params.order(request) == "asc",
        after=after,
        before=before,
        model=_text(request, "model"),
        status=_status(request),
        metadata=_metadata(request),
        created_after=_seconds(request, "created_after"),
        created_before=_seconds(request, "created_before"),
        background=_background(request),
        q=_q(request),
    )


async def list_responses(request: Request) -> Response:
    return json_response(await _listing(request).list(params.project(request), query(request)))


async def response_graph(request: Request) -> Response:
    graph = await _listing(request).graph(params.project(request), request.path_params["response_id"])
    return json_response(graph)


ROUTES = [
    Route("/v1/responses", list_responses, methods=["GET"]),
    Route("/v1/responses/{response_id}/graph", response_graph, methods=["GET"]),
]
