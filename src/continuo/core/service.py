"""The Responses semantics: create (streamed or not), retrieve, delete, list input items.

No HTTP and no SQL here: requests come in as parsed JSON, errors leave as ``APIError``,
state goes through the ``Store`` interface.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from continuo.backends.base import Backend, DeltaStream, ModelRequest, UpstreamError
from continuo.core.builder import Event, ResponseBuilder, new_response
from continuo.core.context import build_context
from continuo.core.request import CreateRequest, parse_create_request
from continuo.core.routing import Router
from continuo.errors import APIError, InvalidRequest, NotFound, UpstreamFailure
from continuo.ids import new_id
from continuo.store.base import Store


def upstream_failure(error: UpstreamError) -> APIError:
    if 400 <= error.status < 500:
        return InvalidRequest(error.message, status=error.status, code=error.code)
    code = "upstream_timeout" if error.status == 504 else "upstream_error"
    return UpstreamFailure(error.message, status=error.status, code=code)


def model_request(request: CreateRequest, upstream_model: str, items: list[dict[str, Any]]) -> ModelRequest:
    params: dict[str, Any] = dict(request.extra)
    for name in ("temperature", "top_p", "max_output_tokens", "prompt_cache_key"):
        if (value := getattr(request, name)) is not None:
            params[name] = value
    if (user := request.safety_identifier or request.user) is not None:
        params["user"] = user
    if request.reasoning.get("effort") is not None:
        params["reasoning_effort"] = request.reasoning["effort"]
    if request.tools:
        params["parallel_tool_calls"] = request.parallel_tool_calls
    return ModelRequest(
        model=upstream_model,
        items=items,
        instructions=request.instructions,
        tools=request.tools,
        tool_choice=request.tool_choice,
        text_format=request.text["format"],
        params=params,
        stream=request.stream,
    )


@dataclass
class Run:
    """One model call on its way to becoming a Response."""

    service: ResponsesService
    project: str
    request: CreateRequest
    builder: ResponseBuilder
    upstream: DeltaStream

    @property
    def response(self) -> dict[str, Any]:
        return self.builder.response

    async def _save(self) -> None:
        if self.request.store:
            await self.service.store.save_response(self.project, self.response, self.request.input)

    async def result(self) -> dict[str, Any]:
        """Run to the end and return the finished Response (non-streamed)."""
        try:
            async for delta in self.upstream:
                self.builder.feed(delta)
        except UpstreamError as exc:
            raise upstream_failure(exc) from None
        finally:
            await self.upstream.aclose()
        self.builder.complete()
        await self._save()
        return self.response

    async def events(self) -> AsyncIterator[Event]:
        """Every stream event, ending with the terminal one, sent after the response is
        stored so that a retrieve right after the stream sees what the stream said."""
        builder = self.builder
        builder.start()
        for event in builder.drain():
            yield event
        try:
            async for delta in self.upstream:
                builder.feed(delta)
                if builder.events:
                    for event in builder.drain():
                        yield event
            builder.complete()
        except UpstreamError as exc:
            builder.fail(exc.message)
        finally:
            await self.upstream.aclose()
        for event in builder.drain():
            yield event
        await self._save()
        builder.terminal()
        for event in builder.drain():
            yield event


class ResponsesService:
    def __init__(self, store: Store, router: Router) -> None:
        self.store = store
        self.router = router

    async def create(self, body: Any, project: str) -> Run:
        """Validate, build the context, open the model call. Errors up to here are plain
        HTTP errors; after it the run reports failures in the Response itself."""
        request = parse_create_request(body)
        backend, upstream_model = self.router.resolve(request.model)
        items = await build_context(self.store, project, request)
        return await self._open(project, request, backend, model_request(request, upstream_model, items))

    async def _open(self, project: str, request: CreateRequest, backend: Backend, call: ModelRequest) -> Run:
        response = new_response(request, new_id("resp"), int(time.time()))
        try:
            upstream = await backend.open(call)
        except UpstreamError as exc:
            raise upstream_failure(exc) from None
        builder = ResponseBuilder(response, emit=request.stream)
        return Run(self, project, request, builder, upstream)

    async def retrieve(self, project: str, response_id: str) -> dict[str, Any]:
        response = await self.store.get_response(project, response_id)
        if response is None:
            raise not_found(response_id)
        return response

    async def delete(self, project: str, response_id: str) -> dict[str, Any]:
        if not await self.store.delete_response(project, response_id):
            raise not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    async def input_items(
        self, project: str, response_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None
    ) -> dict[str, Any]:
        items = await self.store.input_items(project, response_id)
        if items is None:
            raise not_found(response_id)
        if order == "desc":
            items.reverse()
        if after is not None:
            position = next((i for i, item in enumerate(items) if item.get("id") == after), None)
            if position is None:
                raise InvalidRequest(f"No item with id '{after}' in this list.", param="after", code="invalid_value")
            items = items[position + 1 :]
        page = items[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0].get("id") if page else None,
            "last_id": page[-1].get("id") if page else None,
            "has_more": len(items) > limit,
        }


def not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")
