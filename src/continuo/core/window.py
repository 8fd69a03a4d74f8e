"""Fitting a context into the model's window: compaction items opened, automatic
compaction past ``context_management``'s threshold, ``truncation``.

Runs inside the run driver, just before a model call is opened, for every kind of run.
Counting costs a call to the backend's tokenizer (or an estimate), so it happens only
when something depends on it: a known context window, or a compaction threshold.
"""

from __future__ import annotations

from typing import Any

from continuo.backends.base import ModelRequest
from continuo.core.compaction import Compactor, is_instruction
from continuo.core.driver import Job, model_request
from continuo.core.tokens import TokenCounter
from continuo.errors import InvalidRequest

# Of the window, what the answer keeps free when nothing says how long it may be.
DEFAULT_RESERVE = 1 / 8
# Truncation drops the oldest items in steps of this share of the window, at points that
# stay put while the conversation grows, so the prompt's start (an upstream's prompt
# cache) stays the same for many turns instead of changing at every turn.
STEP = 1 / 4


def context_length_exceeded(count: int, window: int) -> InvalidRequest:
    return InvalidRequest(
        f"Your input exceeds the context window of this model ({count} tokens; the window is {window}). "
        "Please adjust your input and try again, or send 'truncation': 'auto'.",
        param="input",
        code="context_length_exceeded",
    )


def threshold(request: Any, window: int | None) -> int | None:
    """The compaction threshold asked for: its ``compact_threshold``, or 80% of a known
    window when it is null; None when no compaction was asked for."""
    for entry in getattr(request, "context_management", None) or ():
        if entry.get("type") == "compaction":
            value = entry.get("compact_threshold")
            if isinstance(value, int):
                return value
            return int(window * 0.8) if window else None
    return None


def _drop_unit(items: list[dict[str, Any]], index: int, dropped: set[int]) -> list[int]:
    """An item and, for a tool call, its outputs: they go together."""
    unit = [index]
    item = items[index]
    if item.get("type") in ("function_call", "custom_tool_call"):
        call_id = item.get("call_id")
        unit += [
            j
            for j in range(index + 1, len(items))
            if j not in dropped and items[j].get("call_id") == call_id and str(items[j].get("type")).endswith("_output")
        ]
    return unit


class Window:
    def __init__(self, counter: TokenCounter, compactor: Compactor) -> None:
        self.counter = counter
        self.compactor = compactor

    def request(self, job: Job, items: list[dict[str, Any]]) -> ModelRequest:
        return model_request(job.request, job.route.upstream_model, items)

    async def count(self, job: Job, items: list[dict[str, Any]]) -> int:
        return await self.counter.count(job.route, self.request(job, items))

    async def prepare(self, job: Job, *, compact: bool = True) -> list[dict[str, Any]]:
        """The context the model is given. A compaction made here is left in
        ``job.extra["output_items"]`` for the driver to add to the response's output."""
        items = self.compactor.expand(job.project, job.context)
        window = self.counter.window(job.route)
        limit = threshold(job.request, window) if compact else None
        if window is None and limit is None:
            return items
        count = await self.count(job, items)
        if limit is not None and count > limit:
            instructions, item, _usage = await self.compactor.compact(job.project, job.request, items, window)
            job.extra.setdefault("output_items", []).append(item)
            items = self.compactor.expand(job.project, [*instructions, item])
            count = await self.count(job, items)
        window = self.counter.window(job.route)  # a tokenize route may have told it meanwhile
        if window is None:
            return items
        if job.request.truncation != "auto":
            if count > window:
                raise context_length_exceeded(count, window)
            return items
        reserve = job.request.max_output_tokens or int(window * DEFAULT_RESERVE)
        budget = max(1, window - min(reserve, window // 2))
        return await self.truncate(job, items, count, budget, window)

    async def truncate(
        self, job: Job, items: list[dict[str, Any]], count: int, budget: int, window: int
    ) -> list[dict[str, Any]]:
        """Drop the oldest items (never an instruction, never the newest item, never a
        call without its output) until the context fits ``budget``."""
        if count <= budget:
            return items
        weights = await self.counter.item_weights(items)
        scale = count / max(1, sum(weights))
        droppable = [i for i in range(len(items) - 1) if not is_instruction(items[i])]
        step = max(1, int(window * STEP))  # in estimated tokens: the same points every turn
        dropped: set[int] = set()
        weight_dropped = 0
        mark = step
        for index in droppable:
            if index in dropped:
                continue
            unit = _drop_unit(items, index, dropped)
            if len(items) - 1 in unit:
                break  # the newest item's call: it stays
            dropped.update(unit)
            weight_dropped += sum(weights[j] for j in unit)
            if weight_dropped < mark:
                continue  # cut only at the fixed step points
            mark = (weight_dropped // step + 1) * step
            if count - weight_dropped * scale > budget:
                continue
            kept = [item for j, item in enumerate(items) if j not in dropped]
            exact = await self.count(job, kept)
            if exact <= budget:
                return kept
            count = exact + int(weight_dropped * scale)  # the estimate was off: correct it
        kept = [item for j, item in enumerate(items) if j not in dropped]
        exact = await self.count(job, kept)
        if exact <= window:
            return kept
        raise context_length_exceeded(exact, window)
