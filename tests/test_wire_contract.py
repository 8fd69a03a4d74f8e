"""The checker that every other test runs under (tests/support/wire.py, contract.py):
a good stream passes, and each way of breaking it is caught."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from continuo.backends.base import Finish, ReasoningDelta, TextDelta, ToolCallDelta, Usage
from continuo.core.builder import ResponseBuilder, new_response
from continuo.core.request import parse_create_request
from tests.support import contract
from tests.support.specs import schemas

Events = list[dict[str, Any]]


def good_stream() -> Events:
    request = parse_create_request({"model": "m", "input": "hi", "stream": True})
    builder = ResponseBuilder(new_response(request, "resp_1", 1))
    builder.start()
    for delta in (
        ReasoningDelta("let me "),
        ReasoningDelta("think"),
        TextDelta("Hello "),
        TextDelta("world"),
        ToolCallDelta(0, "call_1", "get_weather", '{"city":'),
        ToolCallDelta(0, None, None, ' "Oslo"}'),
        Usage(5, 7),
        Finish("stop"),
    ):
        builder.feed(delta)
    builder.complete()
    builder.terminal()
    return [orjson.loads(data) for _, data in builder.drain()]


def problems(events: Events, first_sequence: int = 0) -> list[str]:
    found = contract.stream_problems(events, first_sequence=first_sequence, ended=True)
    for event in events:
        found += [str(v) for v in schemas().event(event)]
    return found


def test_a_good_stream_passes() -> None:
    events = good_stream()
    assert problems(events) == []
    assert problems(events[4:], first_sequence=4) == []  # resumed with starting_after=3


def first(events: Events, kind: str) -> dict[str, Any]:
    return next(e for e in events if e["type"] == kind)


def renumber(events: Events) -> Events:
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def swap(events: Events, a: str, b: str) -> Events:
    i = events.index(first(events, a))
    j = events.index(first(events, b))
    events[i], events[j] = events[j], events[i]
    return renumber(events)


BREAKS: dict[str, tuple[Callable[[Events], Any], str]] = {
    "a field dropped": (lambda ev: ev[0]["response"].pop("presence_penalty"), "'presence_penalty' is a required"),
    "a field of the wrong type": (lambda ev: ev[0]["response"].update(top_p="1"), "is not of type 'number'"),
    "sequence gap": (lambda ev: ev[5].update(sequence_number=99), "sequence numbers"),
    "in_progress missing": (lambda ev: renumber(ev[:1] + ev[2:]), "not response.in_progress"),
    "two terminals": (lambda ev: ev.append({**copy.deepcopy(ev[-1]), "sequence_number": len(ev)}), "2 terminal"),
    "no terminal": (lambda ev: ev.pop(), "0 terminal events"),
    "response id changes": (lambda ev: ev[1]["response"].update(id="resp_2"), "response id resp_2"),
    "added item has content": (
        lambda ev: first(ev, "response.output_item.added")["item"].update(content=[{"type": "reasoning_text"}]),
        "already has content",
    ),
    "added part not empty": (
        lambda ev: [e for e in ev if e["type"] == "response.content_part.added"][1]["part"].update(text="Hel"),
        "the added part is not empty",
    ),
    "done text is not the deltas": (
        lambda ev: first(ev, "response.output_text.done").update(text=""),
        "!= its joined deltas",
    ),
    "reasoning done text is not the deltas": (
        lambda ev: first(ev, "response.reasoning_text.done").update(text="let me"),
        "!= its joined deltas",
    ),
    "arguments done is not the deltas": (
        lambda ev: first(ev, "response.function_call_arguments.done").update(arguments="{}"),
        "!= its joined deltas",
    ),
    "function name differs from the output": (
        lambda ev: first(ev, "response.function_call_arguments.done").update(name="other"),
        "name 'other' is not the final output's",
    ),
    "part done differs from the output": (
        lambda ev: [e for e in ev if e["type"] == "response.content_part.done"][1]["part"].update(text="x"),
        "is not the final output's",
    ),
    "item done differs from the output": (
        lambda ev: first(ev, "response.output_item.done")["item"].update(id="rs_other"),
        "is not the final output's",
    ),
    "wrong output_index": (lambda ev: first(ev, "response.output_text.delta").update(output_index=7), "never added"),
    "wrong item_id": (lambda ev: first(ev, "response.output_text.delta").update(item_id="msg_x"), "item_id msg_x"),
    "delta after its part is done": (
        lambda ev: swap(ev, "response.output_text.delta", "response.output_text.done"),
        "after its part's done",
    ),
    "usage total": (lambda ev: ev[-1]["response"]["usage"].update(total_tokens=5), "total_tokens 5"),
    "status does not match the event": (lambda ev: ev[-1]["response"].update(status="failed"), "response.status"),
}


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_break_is_caught(name: str) -> None:
    events = good_stream()
    mutate, expected = BREAKS[name]
    mutate(events)
    found = problems(events)
    assert any(expected in problem for problem in found), found


def test_framing() -> None:
    good = b'event: response.created\ndata: {"type":"response.created"}\n\n'
    assert contract.parse_sse([good, b": keep-alive\n\n"]) == ([{"type": "response.created"}], [])
    for bad in (
        good.replace(b"\n", b"\r\n"),  # CR
        good[:-1],  # no blank line
        good + good,  # two events in one chunk
        good.replace(b"event: response.created", b"event: response.done"),  # event line is not the type
        b'data: {"type":"response.created"}\n\n',  # no event line
    ):
        assert contract.parse_sse([bad])[1], bad
