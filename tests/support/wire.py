"""What the servers under test put on the wire, recorded, and checked when a test ends.

``record(app)`` wraps a Continuo ASGI app (``ServerThread`` does it for every app that is
not a fake upstream) and keeps, for every ``/v1/responses...`` request, the status, the
content type and the body exactly as the app sent it: one chunk per ASGI body message, so
the SSE framing can be checked too. ``tests/conftest.py`` checks everything a test
produced when it ends (``problems``): JSON bodies and every stream event against OpenAI's
schema and the Open Responses one (``tests/support/specs.py``), each stream against the
contract (``tests/support/contract.py``), and a response said to be stored against what
``GET /v1/responses/{id}`` answers.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson

from continuo.api.corked import WRITE_CHUNKS
from tests.support import contract
from tests.support.specs import schemas

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


# -- the recorder ------------------------------------------------------------------------


@dataclass
class Exchange:
    """One ``/v1/responses...`` request and the answer the app sent."""

    recorder: Recorder
    method: str
    path: str
    query: str
    headers: dict[str, str]
    status: int = 0
    content_type: str = ""
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False  # the last body message (more_body false) was sent
    disconnected: bool = False  # the client went away first
    raised: str | None = None  # the app raised instead of answering
    finished: threading.Event = field(default_factory=threading.Event)
    analysis: Analysis | None = None
    checked: bool = False  # by the end of a test (once it had finished)
    waited: bool = False  # for it to finish, once
    stored_answer: tuple[int, Any] | None = None  # GET /v1/responses/{id} once it ended

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def is_stream(self) -> bool:
        return self.content_type.startswith("text/event-stream")

    def describe(self) -> str:
        where = f"{self.method} {self.path}" + (f"?{self.query}" if self.query else "")
        return f"{where} -> {self.status} ({self.content_type or 'no body'})"


class Log:
    """Every exchange of the session, in order. A test ends by checking the ones not
    checked yet: its own, and those of fixtures set up for it (module-scoped ones too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exchanges: list[Exchange] = []

    def add(self, exchange: Exchange) -> None:
        with self._lock:
            self._exchanges.append(exchange)

    def mark(self) -> int:
        with self._lock:
            return len(self._exchanges)

    def since(self, mark: int) -> list[Exchange]:
        with self._lock:
            return self._exchanges[mark:]

    def unchecked(self) -> list[Exchange]:
        with self._lock:
            return [e for e in self._exchanges if not e.checked]


LOG = Log()


class Recorder:
    """An ASGI middleware that copies what the app answers on ``/v1/responses...``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.url: str | None = None  # set by ServerThread once the port is known
        self.running = False

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if (
            scope["type"] != "http"
            or not scope["path"].startswith("/v1/responses")
            or any(k.decode("latin-1").lower() == CHECK_HEADER for k, _ in scope.get("headers", []))
        ):
            await self.app(scope, receive, send)
            return
        exchange = Exchange(
            recorder=self,
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])},
        )
        LOG.add(exchange)

        async def receive_recorded() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not exchange.complete:
                exchange.disconnected = True
            return message

        async def send_recorded(message: Message) -> None:
            if message["type"] == "http.response.start":
                exchange.status = message["status"]
                for key, value in message.get("headers", []):
                    if key.decode("latin-1").lower() == "content-type":
                        exchange.content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                if body := message.get("body", b""):
                    exchange.chunks.append(bytes(body))
                if not message.get("more_body", False):
                    exchange.complete = True
            try:
                await send(message)
            except OSError:
                exchange.disconnected = True
                raise

        # A stream's events under continuo's own protocol go by its chunk writer, not send.
        if (writer := scope.get(WRITE_CHUNKS)) is not None:

            async def write_recorded(chunks: list[bytes]) -> None:
                exchange.chunks.extend(bytes(chunk) for chunk in chunks if chunk)
                try:
                    await writer(chunks)
                except OSError:
                    exchange.disconnected = True
                    raise

            scope[WRITE_CHUNKS] = write_recorded

        try:
            await self.app(scope, receive_recorded, send_recorded)
        except BaseException as exc:
            if not exchange.disconnected:
                exchange.raised = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            exchange.finished.set()


def record(app: Any) -> Recorder:
    return Recorder(app)


# -- checking what a test produced -------------------------------------------------------

CHECK_HEADER = "x-wire-check"  # the checker's own requests are not recorded


@dataclass
class Analysis:
    problems: list[str]
    events: int  # stream events checked
    # A response this exchange says is stored (a stream's terminal response, a finished
    # non-streamed one), to compare with GET /v1/responses/{id}.
    stored: dict[str, Any] | None = None


def _first_sequence(exchange: Exchange) -> int:
    query = parse_qs(exchange.query)
    if exchange.method == "GET" and "starting_after" in query:
        try:
            return int(query["starting_after"][0]) + 1
        except ValueError:
            return 0  # the server should have refused it; the sequence check will say so
    return 0


def analyse(exchange: Exchange) -> Analysis:
    """Schema and contract problems of one finished exchange (cached on it)."""
    if exchange.analysis is not None:
        return exchange.analysis
    problems: list[str] = []
    events: list[dict[str, Any]] = []
    stored: dict[str, Any] | None = None
    if exchange.raised is not None:
        problems.append(f"[answer] the app raised {exchange.raised}")
    elif not exchange.complete and not exchange.disconnected:
        problems.append("[answer] the app returned without finishing its answer")
    if exchange.is_stream:
        events, problems_framing = contract.parse_sse(exchange.chunks)
        problems += [f"[framing] {p}" for p in problems_framing]
        for event in events:
            problems += [f"[schema] seq {event.get('sequence_number')}: {v}" for v in schemas().event(event)]
        ended = exchange.complete and not exchange.disconnected
        found = contract.stream_problems(events, first_sequence=_first_sequence(exchange), ended=ended)
        problems += [f"[stream] {p}" for p in found]
        last = events[-1] if events else {}
        if ended and last.get("type") in contract.TERMINAL and isinstance(last.get("response"), dict):
            stored = last["response"] if last["response"].get("store") else None
    elif exchange.content_type.startswith("application/json") and exchange.complete:
        try:
            body = orjson.loads(exchange.body)
        except orjson.JSONDecodeError as exc:
            problems.append(f"[answer] the JSON body does not parse: {exc}")
        else:
            problems += [
                f"[schema] {v}" for v in schemas().json_body(exchange.method, exchange.path, exchange.status, body)
            ]
            if exchange.status == 200 and exchange.method == "GET" and exchange.path == "/v1/responses":
                # Continuo's listing (no spec has it): every listed object is a Response.
                problems += [f"[listing] {p}" for p in _listing_problems(body)]
            if exchange.status == 200 and isinstance(body, dict) and body.get("object") == "response":
                problems += [f"[response] {p}" for p in contract.response_problems(body)]
                finished = body.get("status") in contract.TERMINAL.values()
                if exchange.method == "POST" and finished and body.get("store"):
                    stored = body
    elif exchange.complete and exchange.status != 204:
        problems.append(f"[json-answer] a {exchange.status} that is neither JSON nor an event stream")
    exchange.analysis = Analysis(problems, len(events), stored)
    return exchange.analysis


def _listing_problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or body.get("object") != "list" or not isinstance(body.get("data"), list):
        return [f"not a list object: {str(body)[:200]}"]
    problems = [f"missing {key}" for key in ("first_id", "last_id", "has_more") if key not in body]
    for n, listed in enumerate(body["data"]):
        problems += [f"data[{n}]: {v}" for v in schemas().response(listed, f"data[{n}]")]
        problems += [f"data[{n}]: {p}" for p in contract.response_problems(listed)]
    return problems


def settle(exchanges: list[Exchange], timeout: float = 10.0) -> None:
    """Wait for the exchanges to finish and fetch, through their still running servers,
    the stored copy of every response they say was stored. Runs in a test thread (never
    in a server's), before a server stops and when a test ends."""
    deadline = time.monotonic() + timeout
    for exchange in exchanges:
        if not exchange.waited:  # an answer still running after one wait is not waited for again
            exchange.finished.wait(max(0.0, deadline - time.monotonic()))
            exchange.waited = True
    for exchange in exchanges:
        if not exchange.finished.is_set() or exchange.stored_answer is not None:
            continue
        expected = analyse(exchange).stored
        recorder = exchange.recorder
        if expected is None or not recorder.running or recorder.url is None:
            continue
        headers = {CHECK_HEADER: "1"}
        if "authorization" in exchange.headers:
            headers["authorization"] = exchange.headers["authorization"]
        answer = httpx.get(f"{recorder.url}/v1/responses/{expected['id']}", headers=headers, timeout=30)
        exchange.stored_answer = (answer.status_code, answer.json() if answer.status_code == 200 else None)


def _deleted(response_id: str) -> bool:
    return any(
        e.method == "DELETE" and e.path == f"/v1/responses/{response_id}" and e.status == 200 for e in LOG.since(0)
    )


@dataclass
class Totals:
    """What the checks covered in this session, for the summary at the end of a run."""

    exchanges: int = 0
    events: int = 0
    stored: int = 0
    seconds: float = 0.0


TOTALS = Totals()


def problems(exchanges: list[Exchange], exempt: frozenset[str] = frozenset()) -> list[str]:
    """Everything wrong with what these exchanges put on the wire, one entry each."""
    started = time.perf_counter()
    try:
        return _problems(exchanges, exempt)
    finally:
        TOTALS.seconds += time.perf_counter() - started


def _problems(exchanges: list[Exchange], exempt: frozenset[str]) -> list[str]:
    settle(exchanges)
    found = []
    for exchange in exchanges:
        if not exchange.finished.is_set():
            continue  # still running after the wait: nothing settled to check
        analysis = analyse(exchange)
        exchange.checked = True
        TOTALS.exchanges += 1
        TOTALS.events += analysis.events
        TOTALS.stored += exchange.stored_answer is not None
        lines = [p for p in analysis.problems if not any(p.startswith(f"[{rule}]") for rule in exempt)]
        if analysis.stored is not None and exchange.stored_answer is not None and "stored" not in exempt:
            status, stored = exchange.stored_answer
            response_id = analysis.stored["id"]
            if status == 404 and not _deleted(response_id):
                lines.append(f"[stored] GET /v1/responses/{response_id} is a 404 although it says store: true")
            elif status == 200 and stored != analysis.stored:
                lines.append(
                    f"[stored] the stored response differs from the one this answer ended with:\n"
                    f"    stored:   {orjson.dumps(stored).decode()[:3000]}\n"
                    f"    answered: {orjson.dumps(analysis.stored).decode()[:3000]}"
                )
        if lines:
            body = exchange.body.decode("utf-8", "replace")
            found.append(
                f"{exchange.describe()}\n"
                + "\n".join(f"  - {line}" for line in lines)
                + f"\n  body ({len(body)} chars): {body[:4000]}"
            )
    return found
