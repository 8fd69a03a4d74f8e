"""The store interface core talks to. SQL lives behind it, nowhere else."""

from __future__ import annotations

from typing import Any, Protocol


class Store(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date (when migrations are enabled)."""

    async def close(self) -> None: ...

    async def ping(self) -> bool: ...

    async def save_response(self, project: str, response: dict[str, Any], input_items: list[dict[str, Any]]) -> None:
        """Persist a finished response: its object, its own new input, its output."""

    async def get_response(self, project: str, response_id: str) -> dict[str, Any] | None: ...

    async def delete_response(self, project: str, response_id: str) -> bool: ...

    async def chain_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        """Inputs and outputs of the response and all its ancestors, oldest first.
        ``None`` when the response is not stored (for this project)."""

    async def input_items(self, project: str, response_id: str) -> list[dict[str, Any]] | None:
        """The context the response was made from: its ancestors' inputs and outputs,
        then its own input, oldest first. ``None`` when it is not stored."""

    async def find_items(self, project: str, item_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Stored items by id (the newest where an id was stored more than once)."""
