"""The console's reads: the listing of stored responses and the graph of a chain.

Neither is part of OpenAI's API (it has no route that lists responses); both are
Continuo's own, under the same project isolation as ``GET /v1/responses/{id}``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from continuo.core.service import not_found
from continuo.errors import InvalidRequest
from continuo.store.base import ResponseQuery, Store

GRAPH_MAX_NODES = 1000


class ResponseListing:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(self, project: str, query: ResponseQuery) -> dict[str, Any]:
        page = await self.store.list_responses(project, query)
        if not page.anchor_found:
            param = "before" if query.before is not None else "after"
            cursor = query.before if query.before is not None else query.after
            raise InvalidRequest(f"No response with id '{cursor}' in this list.", param=param, code="invalid_value")
        data = page.data
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": page.has_more,
        }

    async def graph(self, project: str, response_id: str) -> dict[str, Any]:
        graph = await self.store.response_graph(project, response_id, GRAPH_MAX_NODES)
        if graph is None:
            raise not_found(response_id)
        return {
            "object": "response.graph",
            "id": response_id,
            "root_id": graph.root_id,
            "nodes": [asdict(node) for node in graph.nodes],
            "truncated": graph.truncated,
        }
