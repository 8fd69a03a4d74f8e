"""The stream contract, checked by content on every recorded stream, and the rules every
response object keeps. Each check returns the problems it found as sentences.

A stream (OpenAI's streaming guide, and what the SDK's stream helper relies on):

- each event is one chunk ``event: <type>\\ndata: <json>\\n\\n`` (LF only), the ``event:``
  line equal to the data's ``type``;
- sequence numbers run 0..n, or N+1.. for ``GET ...?stream=true&starting_after=N``;
- it opens with ``response.created`` then ``response.in_progress`` (a background run may
  show ``response.queued`` between them; one cancelled while queued ends right after it);
- exactly one terminal event (``response.completed/incomplete/failed/cancelled``), last;
- the response id never changes and each lifecycle event's status matches its name;
- ``output_item.added`` announces an item with nothing in it yet, ``content_part.added`` an
  empty part; deltas come between their item's (and part's) added and done;
- every ``*.done`` equals its joined deltas and the terminal response's output; every
  ``content_part.done`` and ``output_item.done`` equals the final output at its index;
- ``usage.total_tokens == input_tokens + output_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

TERMINAL = {
    "response.completed": "completed",
    "response.incomplete": "incomplete",
    "response.failed": "failed",
    "response.cancelled": "cancelled",
}
LIFECYCLE = {"response.created": ("in_progress", "queued"), "response.in_progress": ("in_progress",)}
LIFECYCLE["response.queued"] = ("queued",)
# Delta event -> its done event, for the text-like contents of a part.
PART_TEXT = {
    "response.output_text.delta": "response.output_text.done",
    "response.reasoning_text.delta": "response.reasoning_text.done",
    "response.refusal.delta": "response.refusal.done",
}
PART_DONE_FIELD = {
    "response.output_text.done": "text",
    "response.reasoning_text.done": "text",
    "response.refusal.done": "refusal",
}


# -- framing -----------------------------------------------------------------------------


def parse_sse(chunks: list[bytes]) -> tuple[list[dict[str, Any]], list[str]]:
    """The events of a stream, each from one chunk, and what is wrong with the framing."""
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, chunk in enumerate(chunks):
        where = f"chunk {number} {chunk[:120]!r}"
        if b"\r" in chunk:
            problems.append(f"{where}: CR in an SSE chunk (LF line ends only)")
        if not chunk.endswith(b"\n\n") or b"\n\n" in chunk[:-2]:
            problems.append(f"{where}: a chunk must be exactly one event ending in a blank line")
            continue
        lines = chunk[:-2].split(b"\n")
        if all(line.startswith(b":") for line in lines):
            continue  # a comment (keep-alive) is framing, not an event
        fields: dict[bytes, bytes] = {}
        for line in lines:
            name, _, value = line.partition(b":")
            if name in fields:
                problems.append(f"{where}: field {name!r} twice")
            fields[name] = value[1:] if value.startswith(b" ") else value
        if set(fields) != {b"event", b"data"}:
            problems.append(f"{where}: expected an 'event:' and a 'data:' line, got {sorted(fields)}")
            continue
        try:
            event = orjson.loads(fields[b"data"])
        except orjson.JSONDecodeError as exc:
            problems.append(f"{where}: data is not JSON ({exc})")
            continue
        if not isinstance(event, dict) or fields[b"event"].decode() != event.get("type"):
            problems.append(f"{where}: 'event: {fields[b'event'].decode()}' is not the data's type")
        events.append(event if isinstance(event, dict) else {"type": None, "data": event})
    return events, problems


# -- response objects --------------------------------------------------------------------


def response_problems(response: Any, where: str = "response") -> list[str]:
    """What a Response object must keep, whatever carried it."""
    if not isinstance(response, dict):
        return [f"{where} is not an object"]
    problems = []
    status = response.get("status")
    usage = response.get("usage")
    if isinstance(usage, dict):
        total = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
        if usage.get("total_tokens") != total:
            problems.append(f"{where}.usage.total_tokens {usage.get('total_tokens')} != input + output = {total}")
    output = response.get("output") or []
    ids = [item.get("id") for item in output if isinstance(item, dict)]
    if len(set(ids)) != len(ids):
        problems.append(f"{where}.output has repeated item ids {ids}")
    # (A tool that Continuo ran may have failed inside a completed response: the model was
    # told and answered; OpenAI's mcp_call has a "failed" status for that.)
    item_statuses = {
        item.get("status")
        for item in output
        if isinstance(item, dict) and "status" in item and not str(item.get("type", "")).startswith("mcp_")
    }
    if status == "completed" and item_statuses - {"completed"}:
        problems.append(f"{where} is completed but has output items {sorted(map(str, item_statuses))}")
    if status in ("incomplete", "failed", "cancelled") and item_statuses - {"completed", "incomplete"}:
        problems.append(f"{where} is {status} but an output item is still {sorted(map(str, item_statuses))}")
    if (response.get("error") is not None) != (status == "failed"):
        problems.append(f"{where}: error is {response.get('error')!r} with status {status!r}")
    if (response.get("incomplete_details") is not None) != (status == "incomplete"):
        problems.append(f"{where}: incomplete_details is {response.get('incomplete_details')!r} with status {status!r}")
    if status == "completed" and not isinstance(response.get("completed_at"), int):
        problems.append(f"{where} is completed without completed_at")
    if status in ("queued", "in_progress") and response.get("completed_at") is not None:
        problems.append(f"{where} is {status} but has completed_at")
    return problems


# -- streams -----------------------------------------------------------------------------


@dataclass
class _Part:
    deltas: list[str] = field(default_factory=list)
    text_done: str | None = None
    done: bool = False


@dataclass
class _Item:
    item: dict[str, Any]
    parts: dict[int, _Part] = field(default_factory=dict)
    arguments: list[str] = field(default_factory=list)
    done: bool = False


def _is_empty(value: Any) -> bool:
    return value in ("", None, [], {})


def _final_part(final: dict[str, Any] | None, index: int, content: int) -> Any:
    try:
        return final["output"][index]["content"][content] if final else None
    except (IndexError, KeyError, TypeError):
        return None


@dataclass
class StreamCheck:
    """One stream's events in order; ``problems`` once it has ended."""

    first_sequence: int  # 0, or N+1 for starting_after=N
    ended: bool  # the server finished the body (False: the client hung up first)
    problems: list[str] = field(default_factory=list)
    items: dict[int, _Item] = field(default_factory=dict)
    response_id: str | None = None
    terminal: dict[str, Any] | None = None

    def fail(self, event: dict[str, Any], message: str) -> None:
        self.problems.append(f"seq {event.get('sequence_number')} {event.get('type')}: {message}")

    def run(self, events: list[dict[str, Any]]) -> list[str]:
        self._sequence(events)
        self._opening(events)
        terminals = [e for e in events if e.get("type") in TERMINAL]
        if self.ended and not (self.first_sequence > 0 and not events):
            # (A resumed stream asked to start after its terminal event is empty: nothing
            # comes after that event.)
            if len(terminals) != 1:
                self.problems.append(f"{len(terminals)} terminal events in a stream that ended (exactly one)")
            elif events[-1] is not terminals[0]:
                self.fail(events[-1], "comes after the terminal event")
        if terminals:
            self.terminal = terminals[0].get("response")
        for event in events:
            self._event(event)
        if self.terminal is not None and self.ended:
            self._closing()
        return self.problems

    def _sequence(self, events: list[dict[str, Any]]) -> None:
        numbers = [e.get("sequence_number") for e in events]
        expected = list(range(self.first_sequence, self.first_sequence + len(events)))
        if numbers != expected:
            self.problems.append(f"sequence numbers {numbers} (expected {expected[:3]}..{expected[-1:]})")

    def _opening(self, events: list[dict[str, Any]]) -> None:
        by_number = {e.get("sequence_number"): e.get("type") for e in events}
        if 0 in by_number and by_number[0] != "response.created":
            self.problems.append(f"the stream opens with {by_number[0]}, not response.created")
        if 1 in by_number and by_number[1] not in ("response.in_progress", "response.queued"):
            self.problems.append(f"the second event is {by_number[1]}, not response.in_progress (or queued)")
        if by_number.get(1) == "response.queued" and 2 in by_number:
            if by_number[2] not in ("response.in_progress", "response.cancelled", "response.failed"):
                self.problems.append(f"response.queued is followed by {by_number[2]}, not response.in_progress")

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if "response" in event:
            self._lifecycle(event)
        if kind == "response.output_item.added":
            self._item_added(event)
        elif kind == "response.content_part.added":
            self._part_added(event)
        elif kind in PART_TEXT:
            part = self._open_part(event)
            if part is not None:
                part.deltas.append(event.get("delta", ""))
        elif kind in PART_DONE_FIELD:
            self._text_done(event, PART_DONE_FIELD[kind])
        elif kind == "response.content_part.done":
            self._part_done(event)
        elif kind == "response.function_call_arguments.delta":
            item = self._open_item(event)
            if item is not None:
                item.arguments.append(event.get("delta", ""))
        elif kind == "response.function_call_arguments.done":
            self._arguments_done(event)
        elif kind == "response.output_item.done":
            self._item_done(event)

    def _lifecycle(self, event: dict[str, Any]) -> None:
        response = event["response"]
        if not isinstance(response, dict):
            return
        if self.response_id is None:
            self.response_id = response.get("id")
        elif response.get("id") != self.response_id:
            self.fail(event, f"response id {response.get('id')} != {self.response_id}")
        kind = str(event.get("type"))
        allowed = LIFECYCLE.get(kind) or ((TERMINAL[kind],) if kind in TERMINAL else None)
        if allowed and response.get("status") not in allowed:
            self.fail(event, f"response.status is {response.get('status')!r}")
        for problem in response_problems(response, f"{kind}.response"):
            self.fail(event, problem)

    def _item_added(self, event: dict[str, Any]) -> None:
        index, item = event.get("output_index"), event.get("item") or {}
        if not isinstance(index, int) or index in self.items:
            self.fail(event, f"output_index {index!r} added twice or not an integer")
            return
        if self.first_sequence == 0 and index != len(self.items):
            self.fail(event, f"output_index {index} but {len(self.items)} items were added before")
        for key in ("content", "arguments", "summary"):
            if key in item and not _is_empty(item[key]):
                self.fail(event, f"the added item already has {key} {item[key]!r}")
        self.items[index] = _Item(item=item)

    def _open_item(self, event: dict[str, Any]) -> _Item | None:
        """The item this event is about, which must be added, not done, and match item_id."""
        index = event.get("output_index")
        item = self.items.get(index) if isinstance(index, int) else None
        if item is None:
            if self.first_sequence == 0:
                self.fail(event, f"output_index {index} was never added")
            return None
        if item.done:
            self.fail(event, f"output_index {index} is already done")
        if "item_id" in event and event["item_id"] != item.item.get("id"):
            self.fail(event, f"item_id {event['item_id']} is not the added item's {item.item.get('id')}")
        return item

    def _part_added(self, event: dict[str, Any]) -> None:
        item = self._open_item(event)
        if item is None:
            return
        index, part = event.get("content_index"), event.get("part") or {}
        if index in item.parts:
            self.fail(event, f"content_index {index} added twice")
        elif isinstance(index, int) and index != len(item.parts):
            self.fail(event, f"content_index {index} but {len(item.parts)} parts were added before")
        full = {k: v for k, v in part.items() if k != "type" and not _is_empty(v)}
        if full:
            self.fail(event, f"the added part is not empty: {full!r}")
        item.parts[index] = _Part()  # type: ignore[index]

    def _open_part(self, event: dict[str, Any], *, closing: bool = False) -> _Part | None:
        """The part this event is about: added, not done (nor its text, unless ``closing``)."""
        item = self._open_item(event)
        if item is None:
            return None
        part = item.parts.get(event.get("content_index"))  # type: ignore[arg-type]
        if part is None:
            self.fail(event, f"content_index {event.get('content_index')} was never added")
        elif part.done or (part.text_done is not None and not closing):
            self.fail(event, "comes after its part's done")
        return part

    def _text_done(self, event: dict[str, Any], key: str) -> None:
        part = self._open_part(event)
        text = event.get(key)
        if part is not None:
            if text != "".join(part.deltas):
                self.fail(event, f"{key} {text!r} != its joined deltas {''.join(part.deltas)!r}")
            part.text_done = text
        final = _final_part(self.terminal, event.get("output_index", -1), event.get("content_index", -1))
        if self.terminal is not None and (not isinstance(final, dict) or final.get(key) != text):
            self.fail(event, f"{key} {text!r} is not the final output's {final!r}")

    def _part_done(self, event: dict[str, Any]) -> None:
        part = self._open_part(event, closing=True)
        if part is not None:
            part.done = True
        final = _final_part(self.terminal, event.get("output_index", -1), event.get("content_index", -1))
        if self.terminal is not None and event.get("part") != final:
            self.fail(event, f"part {event.get('part')!r} is not the final output's {final!r}")

    def _final_item(self, event: dict[str, Any]) -> Any:
        try:
            return self.terminal["output"][event["output_index"]] if self.terminal else None
        except (IndexError, KeyError, TypeError):
            return None

    def _arguments_done(self, event: dict[str, Any]) -> None:
        item = self._open_item(event)
        arguments = event.get("arguments")
        if item is not None and arguments != "".join(item.arguments):
            self.fail(event, f"arguments {arguments!r} != its joined deltas {''.join(item.arguments)!r}")
        final = self._final_item(event)
        if self.terminal is not None:
            if not isinstance(final, dict) or final.get("arguments") != arguments:
                self.fail(event, f"arguments {arguments!r} are not the final output's")
            elif final.get("name") != event.get("name"):
                self.fail(event, f"name {event.get('name')!r} is not the final output's {final.get('name')!r}")

    def _item_done(self, event: dict[str, Any]) -> None:
        item = self._open_item(event)
        if item is not None:
            item.done = True
            unfinished = [i for i, p in item.parts.items() if not p.done]
            if unfinished:
                self.fail(event, f"parts {unfinished} of the item were never done")
        final = self._final_item(event)
        if self.terminal is not None and event.get("item") != final:
            self.fail(event, f"item {event.get('item')!r} is not the final output's {final!r}")

    def _closing(self) -> None:
        assert self.terminal is not None
        undone = [i for i, item in self.items.items() if not item.done]
        if undone:
            self.problems.append(f"output items {undone} were added but never done")
        if self.first_sequence == 0 and len(self.items) != len(self.terminal.get("output") or []):
            self.problems.append(
                f"{len(self.items)} items were added but the final output has {len(self.terminal.get('output') or [])}"
            )


def stream_problems(events: list[dict[str, Any]], *, first_sequence: int, ended: bool) -> list[str]:
    return StreamCheck(first_sequence=first_sequence, ended=ended).run(events)
