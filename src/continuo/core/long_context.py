"""``POST /v1/responses/input_tokens`` and ``POST /v1/responses/compact``.

Both take the create body and build the context exactly as a create would (chain,
references, compaction items opened); neither stores anything.
"""

from __future__ import annotations

import time
from typing import Any

from continuo.backends.base import UpstreamError
from continuo.core.builder import ResponseBuilder, new_response
from continuo.core.compaction import Compactor
from continuo.core.context import build_context
from continuo.core.driver import Job, RunDriver, upstream_failure
from continuo.core.request import CreateRequest, parse_create_request
from continuo.core.validation import missing
from continuo.core.window import Window
from continuo.errors import InvalidRequest
from continuo.ids import new_id
from continuo.store.base import Store

# Fields of a create body that make no sense here; dropped, not refused (Codex and the
# SDKs send what they send on create).
_IGNORED = ("stream", "background", "store")


def _usage(raw: dict[str, Any]) -> dict[str, Any]:
    input_tokens = int(raw.get("input_tokens") or 0)
    output_tokens = int(raw.get("output_tokens") or 0)
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            **(raw.get("input_tokens_details") or {}),
        },
        "output_tokens": output_tokens,
        "output_tokens_details": raw.get("output_tokens_details") or {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


class LongContextService:
    def __init__(
        self, store: Store, driver: RunDriver, window: Window, compactor: Compactor, max_input_items: int
    ) -> None:
        self.store = store
        self.driver = driver
        self.window = window
        self.compactor = compactor
        self.max_input_items = max_input_items

    def _parse(self, body: Any, *, model_required: bool) -> CreateRequest:
        if not isinstance(body, dict):
            raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
        body = {k: v for k, v in body.items() if k not in _IGNORED}
        if body.get("model") is None:
            if model_required or "*" not in self.driver.router.routes:
                raise missing("model")
            body["model"] = "*"  # counting for "any model": the catch-all route's
        return parse_create_request(body, self.max_input_items)

    async def _job(self, project: str, request: CreateRequest) -> Job:
        self.driver.router.check(request.model)  # an unknown model is a 400 first
        items = await build_context(self.store, project, request)
        builder = ResponseBuilder(new_response(request, new_id("resp"), int(time.time())), emit=False)
        return self.driver.job(project, request, items, builder)

    async def input_tokens(self, body: Any, project: str) -> dict[str, Any]:
        """The input tokens of the context a create with this body would send (compaction
        items opened, ``truncation: "auto"`` applied; no compaction is run to count)."""
        request = self._parse(body, model_required=False)
        job = await self._job(project, request)
        try:
            items = await self.window.prepare(job, compact=False)
            count = await self.window.count(job, items)
        except UpstreamError as exc:  # the backend's tokenizer failed or refused the input
            raise upstream_failure(exc) from None
        return {"object": "response.input_tokens", "input_tokens": count}

    async def compact(self, body: Any, project: str) -> dict[str, Any]:
        """The context compacted: its instructions, then one compaction item."""
        request = self._parse(body, model_required=True)
        job = await self._job(project, request)
        items = self.compactor.expand(project, job.context)
        window = self.window.counter.window(job.route)
        try:
            instructions, item, usage = await self.compactor.compact(project, request, items, window)
        except UpstreamError as exc:
            raise upstream_failure(exc) from None
        return {
            "id": new_id("resp"),
            "object": "response.compaction",
            "created_at": int(time.time()),
            "output": [*instructions, item],
            "usage": _usage(usage),
        }
