"""Watching it run: /metrics after a known sequence of requests, a trace of a streamed,
stored, chained request, request ids, and JSON logs that hold no key and no prompt."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from continuo.api.app import create_app
from continuo.api.observe import metrics_allowed
from continuo.config import MetricsConfig, parse_config
from continuo.observability import setup_tracing, shutdown_tracing
from tests.support.configs import write_config
from tests.support.fake_chat import FakeChatUpstream, Reply
from tests.support.process import ServerProcess
from tests.support.servers import ServerThread
from tests.support.waits import wait_until


def serve(upstream_url: str, db: Path, **sections: Any) -> ServerThread:
    raw: dict[str, Any] = {
        "database": {"url": f"sqlite:///{db}"},
        "providers": [{"name": "obs", "type": "chat_completions", "base_url": f"{upstream_url}/v1", "max_retries": 0}],
        "models": [{"name": "*", "provider": "obs"}],
        **sections,
    }
    return ServerThread(create_app(parse_config(raw))).start()


def scrape(server: ServerThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{server.url}/metrics")
    assert answer.status_code == 200, answer.text
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_a_known_sequence_exactly(upstream: FakeChatUpstream, tmp_path: Path) -> None:
    server = serve(upstream.url, tmp_path / "m.db")
    model = "metrics-probe-model"  # a name no other test sends, so counts are this test's own
    try:
        before = scrape(server)
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
            first = client.responses.create(model=model, input="one")
            client.responses.create(model=model, input="two", store=False)
            with client.responses.stream(model=model, input="three") as stream:
                for _ in stream:
                    pass
            client.responses.retrieve(first.id)
            with pytest.raises(openai.NotFoundError):
                client.responses.retrieve("resp_missing")
            upstream.script(Reply(status=500, body=b'{"error": {"message": "boom"}}'))
            with pytest.raises(openai.InternalServerError):
                client.responses.create(model=model, input="fails")
            job = client.responses.create(model=model, input="later", background=True)
            wait_until(lambda: client.responses.retrieve(job.id).status == "completed")
        after = scrape(server)
    finally:
        server.stop()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    post = {"route": "/v1/responses", "method": "POST"}
    assert delta("continuo_requests_total", **post, status="200", model=model) == 4  # incl. the background one
    assert delta("continuo_requests_total", **post, status="502", model=model) == 1
    get = {"route": "/v1/responses/{response_id}", "method": "GET", "model": ""}
    # 1 retrieve + the polls of the background job (at least one), and one 404
    assert delta("continuo_requests_total", **get, status="404") == 1
    assert delta("continuo_request_duration_seconds_count", **post) == 5
    upstream_labels = {"provider": "obs", "model": model}
    # Foreground calls: three answered, one failed; the background run's too (its own task).
    assert delta("continuo_upstream_duration_seconds_count", **upstream_labels) == 5
    assert delta("continuo_upstream_time_to_first_token_seconds_count", **upstream_labels) == 4
    assert delta("continuo_upstream_errors_total", provider="obs", kind="failed") == 1
    # The fake reports 11 prompt tokens for each answered call.
    assert delta("continuo_tokens_total", model=model, direction="input") == 4 * 11
    assert delta("continuo_tokens_total", model=model, direction="output") > 0
    # Continuo's own time, for the four foreground requests that called the upstream.
    assert delta("continuo_added_duration_seconds_count", route="/v1/responses") == 4
    assert value(after, "continuo_active_streams") == 0
    assert delta("continuo_store_operation_duration_seconds_count", operation="save") == 2
    assert value(after, "continuo_background_runs", status="completed") == 1
    assert value(after, "continuo_background_runs", status="queued") == 0


def test_metrics_access_rules(upstream: FakeChatUpstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loopback_only = MetricsConfig()
    assert metrics_allowed(loopback_only, "127.0.0.1", None) is None
    assert metrics_allowed(loopback_only, "::1", None) is None
    refused = metrics_allowed(loopback_only, "10.1.2.3", None)
    assert refused is not None and refused.status == 403
    assert metrics_allowed(MetricsConfig(public=True), "10.1.2.3", None) is None
    off = metrics_allowed(MetricsConfig(enabled=False), "127.0.0.1", None)
    assert off is not None and off.status == 404

    monkeypatch.setenv("CONTINUO_TEST_METRICS_KEY", "sk-metrics")
    server = serve(upstream.url, tmp_path / "k.db", metrics={"key_env": "CONTINUO_TEST_METRICS_KEY"})
    try:
        anonymous = httpx.get(f"{server.url}/metrics")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
        wrong = httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer sk-nope"})
        assert wrong.status_code == 401
        right = httpx.get(f"{server.url}/metrics", headers={"authorization": "Bearer sk-metrics"})
        assert right.status_code == 200 and "continuo_requests_total" in right.text
    finally:
        server.stop()


def test_request_ids_round_trip(server: ServerThread, client: openai.OpenAI) -> None:
    mine = httpx.get(f"{server.url}/v1/models", headers={"x-request-id": "client-id-42"})
    assert mine.headers["x-request-id"] == "client-id-42"
    fresh = [httpx.get(f"{server.url}/healthz").headers["x-request-id"] for _ in range(2)]
    assert fresh[0] != fresh[1] and all(r.startswith("req_") for r in fresh)
    # An id that is not a sane token is replaced, not echoed.
    odd = httpx.get(f"{server.url}/healthz", headers={"x-request-id": "a b\tc"}).headers["x-request-id"]
    assert odd.startswith("req_")
    # Errors carry it too, and the SDK exposes it.
    missing = httpx.get(f"{server.url}/v1/responses/resp_nope", headers={"x-request-id": "lost-1"})
    assert (missing.status_code, missing.headers["x-request-id"]) == (404, "lost-1")
    created = client.responses.with_raw_response.create(model="m", input="hi", extra_headers={"x-request-id": "r-7"})
    assert created.headers["x-request-id"] == "r-7"
    assert client.responses.create(model="m", input="hi")._request_id.startswith("req_")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    assert setup_tracing(provider)
    yield exporter
    shutdown_tracing()
    provider.shutdown()


CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


def test_trace_of_a_streamed_stored_chained_request(
    spans: InMemorySpanExporter, upstream: FakeChatUpstream, tmp_path: Path
) -> None:
    server = serve(upstream.url, tmp_path / "t.db")  # after setup_tracing: its upstream session is instrumented
    try:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
            first = client.responses.create(model="traced", input="remember")
            upstream.script(Reply(text="fine", tool_calls=[("lookup", '{"q": 1}')]))
            traceparent = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
            with client.responses.stream(
                model="traced",
                input="go on",
                previous_response_id=first.id,
                extra_headers={"traceparent": traceparent},
            ) as stream:
                final = stream.get_final_response()
    finally:
        server.stop()

    def ours() -> list[ReadableSpan]:
        found = [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == CLIENT_TRACE]
        return found if any(s.name == "POST /v1/responses" for s in found) else []

    trace = wait_until(ours)
    [request] = [s for s in trace if s.name == "POST /v1/responses"]
    assert request.parent is not None and format(request.parent.span_id, "016x") == CLIENT_SPAN
    assert request.attributes["gen_ai.request.model"] == "traced"
    assert request.attributes["gen_ai.response.id"] == final.id
    assert request.attributes["http.response.status_code"] == 200
    children = {s.name: s for s in trace if s.parent is not None and s.parent.span_id == request.context.span_id}
    # The chain is read from the store, the model called, the result stored: all under the request.
    assert {"store chain", "upstream", "store save"} <= set(children)
    call = children["upstream"]
    assert (call.attributes["continuo.provider"], call.attributes["gen_ai.request.model"]) == ("obs", "traced")
    assert call.attributes["gen_ai.usage.input_tokens"] == 11
    under_call = {s.name for s in trace if s.parent is not None and s.parent.span_id == call.context.span_id}
    assert "tool_call lookup" in under_call
    under = [s for s in trace if s.parent is not None and s.parent.span_id == call.context.span_id]
    [http] = [s for s in under if s.kind.name == "CLIENT"]
    # The upstream got a traceparent in the client's trace, naming the HTTP call's span.
    sent = upstream.headers[-1]["traceparent"]
    assert sent == f"00-{CLIENT_TRACE}-{format(http.context.span_id, '016x')}-01"


def test_json_logs_carry_request_ids_and_never_a_key_or_prompt(upstream: FakeChatUpstream, tmp_path: Path) -> None:
    key = "sk-obs-secret-key-123"
    prompt = "my very private prompt about zebras"
    path = write_config(
        tmp_path / "logs.toml",
        database_url=f"sqlite:///{tmp_path / 'logs.db'}",
        upstream_url=upstream.url,
        extra=f'[logging]\nformat = "json"\n\n[[keys]]\nproject = "p"\nhash = "{_hash(key)}"\n',
    )
    server = ServerProcess(path).start()
    try:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0) as client:
            raw = client.responses.with_raw_response.create(model="m", input=prompt)
            request_id = raw.headers["x-request-id"]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-wrong-guess", max_retries=0).models.list()
    finally:
        server.terminate()
    text = server.log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    [access] = [line for line in lines if line.get("request_id") == request_id]
    assert (access["message"], access["status"], access["model"]) == ("POST /v1/responses 200", 200, "m")
    refused = [line for line in lines if "unknown or revoked API key" in line["message"]]
    assert len(refused) == 1 and refused[0]["request_id"].startswith("req_")
    # Answered before routing, yet counted under its route template.
    [refused_access] = [line for line in lines if line["logger"] == "continuo.access" and line["status"] == 401]
    assert refused_access["message"] == "GET /v1/models 401"
    assert refused_access["request_id"] == refused[0]["request_id"]
    assert key not in text and "sk-wrong-guess" not in text and "zebras" not in text


def _hash(key: str) -> str:
    from continuo.core.keys import hash_key

    return hash_key(key)
