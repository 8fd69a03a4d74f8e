"""Compaction: the older part of a context, summarized by the routed model and sealed
into a ``compaction`` item that stands in for it from then on.

The sealed payload holds the summary and the items kept verbatim after it (the latest
user turn, so a model answering from a compacted context still reads the request word
for word). System and developer messages are never summarized away: they stay where they
are, outside the item. In a context, the last compaction item replaces everything before
it except those messages (as OpenAI documents: items before the latest compaction item
may be dropped); it is opened and becomes a developer message with the summary, then
its kept items.

The summary is a model call like any other, made by the run driver with a sink that only
collects the answer. It is the context itself, under the request's own instructions,
followed by one user message that asks for the summary (as Codex compacts): the model
has just read that context, so its prompt cache (an upstream's, or the embedded model's
slot) already holds all but the last message, and the summary costs only its own words
instead of a second reading of the whole context. (The call offers no tools, so where
the context was read with tools offered the cached prefix is only the part before them.)
"""

from __future__ import annotations

import time
from typing import Any

from continuo.core.builder import Event, ResponseBuilder, new_response
from continuo.core.driver import RunDriver, upstream_failure
from continuo.core.items import user_message
from continuo.core.request import CreateRequest
from continuo.core.sealing import Sealer
from continuo.core.status import Status
from continuo.core.tokens import TokenCounter
from continuo.errors import InvalidRequest, UpstreamFailure
from continuo.ids import new_id

INSTRUCTIONS = """Compact the conversation above so it can go on in a short context. \
Write a summary that lets the assistant continue as if it had the whole conversation. Keep: \
the user's goals and the task in progress; every fact, name, number or preference the user \
gave; decisions and results so far; tool calls made, their results, and calls still waiting; \
open questions. Leave out greetings and repetition. Plain text, no preamble."""

# The message that asks for the summary, after the context it summarizes.
REQUEST = INSTRUCTIONS + "\n\nWrite the summary of the conversation above now."
SUMMARY_HEADER = "Summary of the earlier part of this conversation (compacted):\n\n"
MAX_SUMMARY_TOKENS = 1024


def is_instruction(item: dict[str, Any]) -> bool:
    """A system or developer message: never summarized, never dropped."""
    return item.get("type") == "message" and item.get("role") in ("system", "developer")


def is_summary(item: dict[str, Any]) -> bool:
    return is_instruction(item) and str(item.get("id", "")).startswith("cmp_")


def summary_message(item_id: str, summary: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "developer",
        "content": [{"type": "input_text", "text": SUMMARY_HEADER + summary}],
        "status": "completed",
    }


def summary_budget(window: int | None) -> int:
    return MAX_SUMMARY_TOKENS if window is None else max(32, min(MAX_SUMMARY_TOKENS, window // 8))


def split_tail(items: list[dict[str, Any]], weights: list[int], limit: int) -> int:
    """Where the verbatim tail starts: at the last user message when that turn fits in
    ``limit``; else the longest suffix that fits and does not begin with a tool output
    (a call is never kept without... its output, nor an output without its call)."""
    last_user = next(
        (
            i
            for i in range(len(items) - 1, -1, -1)
            if items[i].get("type") == "message" and items[i].get("role") == "user"
        ),
        None,
    )
    if last_user is not None and sum(weights[last_user:]) <= limit:
        return last_user
    start, used = len(items), 0
    for i in range(len(items) - 1, -1, -1):
        used += weights[i]
        if used > limit:
            break
        if not str(items[i].get("type", "")).endswith("_output"):
            start = i
    return start


class _Collect:
    """A sink that keeps nothing: the summary is read from the settled response."""

    persists_events = False

    async def emit(self, events: list[Event]) -> None:
        return None

    async def persist(self, builder: ResponseBuilder, closing: list[Event]) -> None:
        return None


class Compactor:
    def __init__(self, driver: RunDriver, counter: TokenCounter, sealer: Sealer) -> None:
        self.driver = driver
        self.counter = counter
        self.sealer = sealer

    # -- reading compaction items -------------------------------------------------------

    def expand(self, project: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The context with its last compaction item opened in place of what it replaced.
        Every compaction item is verified; one that does not open is a 400."""
        last = None
        payloads: dict[int, dict[str, Any]] = {}
        for index, item in enumerate(items):
            if item.get("type") == "compaction":
                payloads[index] = self.sealer.open(project, item.get("encrypted_content"), f"input[{index}]")
                last = index
        if last is None:
            return items
        payload = payloads[last]
        kept = [i for i in payload.get("items", []) if isinstance(i, dict)]
        kept_ids = {i.get("id") for i in kept}
        before = [i for i in items[:last] if is_instruction(i) and not is_summary(i) and i.get("id") not in kept_ids]
        text = str(payload.get("summary") or "")
        summary = [summary_message(str(items[last].get("id") or new_id("cmp")), text)] if text else []
        return [*before, *summary, *kept, *items[last + 1 :]]

    # -- making one ---------------------------------------------------------------------

    async def summarize(
        self, project: str, request: CreateRequest, items: list[dict[str, Any]], budget: int
    ) -> tuple[str, dict[str, Any]]:
        """The routed model's summary of ``items``, and the call's usage."""
        call = CreateRequest(
            model=request.model,
            input=[*items, user_message(REQUEST)],
            instructions=request.instructions,  # the context's own prefix: a cache hit
            store=False,
            max_output_tokens=budget,
            temperature=0.2,
            prompt_cache_key=request.prompt_cache_key,
            truncation="auto",  # a summary is always possible: the oldest part goes first
        )
        builder = ResponseBuilder(new_response(call, new_id("resp"), int(time.time())), emit=False)
        job = self.driver.job(project, call, call.input, builder)
        await self.driver.run(job, _Collect())
        response = builder.response
        if response["status"] == Status.FAILED:
            if job.error is not None:
                raise upstream_failure(job.error)
            error = response.get("error") or {}
            message = f"Compaction failed: {error.get('message', 'the summary call failed')}"
            if job.failure is not None and job.failure.code == "context_length_exceeded":
                raise InvalidRequest(message, param="input", code="context_length_exceeded")
            raise UpstreamFailure(message, code="compaction_failed")
        texts = [
            part.get("text", "")
            for item in response["output"]
            if item.get("type") == "message"
            for part in item.get("content", ())
            if part.get("type") == "output_text"
        ]
        return "".join(texts).strip(), response.get("usage") or {}

    async def compact(
        self, project: str, request: CreateRequest, items: list[dict[str, Any]], window: int | None
    ) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
        """Compact an (expanded) context: (the instructions kept outside, the compaction
        item, the summary call's usage). The context that follows is the instructions,
        then the item."""
        budget = summary_budget(window)
        weights = await self.counter.item_weights(items)
        limit = (window // 4) if window else 4 * MAX_SUMMARY_TOKENS
        start = split_tail(items, weights, limit)
        head, tail = items[:start], items[start:]
        instructions = [i for i in head if is_instruction(i) and not is_summary(i)]
        summary, usage = await self.summarize(project, request, head, budget) if head else ("", {})
        item = {
            "id": new_id("cmp"),
            "type": "compaction",
            "encrypted_content": self.sealer.seal(project, {"summary": summary, "items": tail}),
        }
        return instructions, item, usage
