"""The service's parts on their own: batcher, breaker, fault injection, redaction, trace writer, settings."""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flowfront.backends.base import Backend, CallRequest, Completion
from flowfront.backends.faults import FaultInjectingBackend
from flowfront.backends.guard import BreakerBoard, CallEvent
from flowfront.errors import BackendError, SpecError
from flowfront.redact import Redactor, install_redaction, uninstall_redaction
from flowfront.service.batcher import MicroBatcher
from flowfront.service.metrics import Metrics
from flowfront.service.tracing import TraceWriter
from flowfront.store import StoreUnavailable, connect, parse_store_url
from flowfront.store.sqlite import SQLiteStore
from flowfront.store.testing import decision

DONE = Completion(
    text="B", prompt_tokens=10, completion_tokens=1, latency_s=0.2, cost_usd=1e-4, latency_source="recorded"
)


class Echo(Backend):
    """A backend that answers every call (the thing fault injection wraps)."""

    def __init__(self) -> None:
        self.calls = 0

    async def complete(self, request: CallRequest) -> Completion:
        self.calls += 1
        return DONE


async def test_batcher_groups_concurrent_items_and_keeps_order() -> None:
    seen: list[int] = []
    gate = threading.Event()

    def square(batch):
        gate.wait(5)  # hold the first batch so the others queue up behind it
        seen.append(len(batch))
        return [x * x for x in batch]

    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(square, pool, max_size=8)
        batcher.start()
        first = asyncio.create_task(batcher.submit(1))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.submit(i)) for i in range(2, 12)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await first == 1
        assert [await t for t in rest] == [i * i for i in range(2, 12)]
        await batcher.aclose()
    assert seen == [1, 8, 2]  # the queued ten went as full batches, in arrival order


async def test_batcher_hands_errors_to_every_caller_and_keeps_running() -> None:
    def fail_on_three(batch):
        if 3 in batch:
            raise ValueError("three is not allowed")
        return batch

    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(fail_on_three, pool)
        batcher.start()
        with pytest.raises(ValueError, match="three"):
            await batcher.submit(3)
        assert await batcher.submit(4) == 4
        await batcher.aclose()
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit(5)


def test_breaker_opens_half_opens_and_closes() -> None:
    now = [0.0]
    changes: list[tuple[str, str]] = []
    board = BreakerBoard(
        failures=3, reset_s=10.0, clock=lambda: now[0], on_change=lambda m, s: changes.append((m, s))
    )
    assert board.unavailable({"m", "n"}) == set()
    for _ in range(2):
        board.failure("m")
    board.success("m")  # a success resets the count
    for _ in range(3):
        assert board.acquire("m")
        board.failure("m")
    assert board.state("m") == "open" and not board.acquire("m") and board.unavailable({"m", "n"}) == {"m"}
    now[0] = 10.0
    assert board.state("m") == "half-open" and board.available("m")
    assert board.acquire("m") and not board.acquire("m")  # one probe at a time
    board.failure("m")
    assert board.state("m") == "open"
    now[0] = 25.0
    assert board.acquire("m")
    board.success("m")
    assert board.state("m") == "closed" and board.unavailable({"m"}) == set()
    assert changes == [("m", "open"), ("m", "half-open"), ("m", "open"), ("m", "half-open"), ("m", "closed")]


async def test_fault_injection_fails_and_hangs_named_models_only() -> None:
    inner = Echo()
    faults = FaultInjectingBackend(inner, fail_models={"bad"}, hang_models={"slow"}, hang_s=30)
    with pytest.raises(BackendError, match="injected") as err:
        await faults.complete(CallRequest(model="bad", messages=()))
    assert err.value.retryable and err.value.model == "bad"
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await faults.complete(CallRequest(model="slow", messages=()))
    assert await faults.complete(CallRequest(model="good", messages=())) is DONE
    assert inner.calls == 1 and faults.injected == {"bad": 1, "slow": 1}
    with pytest.raises(SpecError, match="both"):
        FaultInjectingBackend(inner, fail_models={"x"}, hang_models={"x"})


def test_redactor_masks_environment_secrets_and_key_shapes() -> None:
    # Fake keys, assembled here so secret scanners do not mistake the test for a leak.
    fake_openai, fake_other = "sk-" + "proj-abcdefghijklmnop1234", "sk-" + "otherkey0123456789abcd"
    env = {"OPENAI_API_KEY": fake_openai, "HOME": "/root", "MY_TOKEN": "tok-0123456789", "SHORT_KEY": "abc"}
    red = Redactor.from_environment(environ=env)
    text = f"auth failed for {fake_openai} and tok-0123456789 (also {fake_other}) at /root abc"
    out = red.scrub(text)
    assert "abcdefghijklmnop" not in out and "tok-0123456789" not in out and "otherkey" not in out
    assert out.endswith("at /root abc")  # ordinary values and too-short ones stay
    assert red.scrub_obj({"a": ["tok-0123456789", 3]}) == {"a": ["[redacted]", 3]}
    logger = logging.getLogger("flowfront.test-redact")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    changed = install_redaction(red)
    try:
        logger.info("key %s in %s", "tok-0123456789", "place")
    finally:
        uninstall_redaction(changed)
        logger.removeHandler(handler)
    assert "tok-0123456789" not in stream.getvalue() and "key [redacted] in place" in stream.getvalue()


async def test_trace_writer_batches_and_flushes_everything_on_close(tmp_path: Path) -> None:
    metrics = Metrics.create()
    writer = TraceWriter(
        parse_store_url(tmp_path / "served.sqlite"),
        metrics,
        Redactor(["sk-secret-value-123"]),
        batch_size=50,
        flush_interval_s=5.0,
        durable=False,
    )
    await writer.start()
    request = CallRequest(model="m", messages=({"role": "user", "content": "q"},))
    failed = BackendError("provider said sk-secret-value-123 is wrong", model="m")
    for i in range(120):
        events = [CallEvent("c0", request, DONE, None, False, 0.001, time.time()),
                  CallEvent("c1", request, None, failed, False, 0.001, time.time())]
        await writer.record(decision(f"trace{i:03d}"), events)
    await asyncio.sleep(0.2)
    assert writer.written >= 200  # full batches went out without waiting for the 5 s interval
    await writer.aclose()
    assert writer.written == 360  # a decision and two calls per request
    with connect(tmp_path / "served.sqlite") as store:
        calls, decisions = store.served_calls(), store.decisions()
    assert len(calls) == 240 and len({c.trace_id for c in calls}) == 120 and len(decisions) == 120
    assert (
        all("sk-secret" not in (c.error or "") for c in calls)
        and sum(c.response == "B" for c in calls) == 120
    )


async def test_a_durable_request_whose_rows_cannot_be_committed_is_told_not_answered(tmp_path: Path) -> None:
    """Durable means durable: a batch the store refuses fails its waiting requests (the service
    answers them 503); nothing is reported written. The refusal is real: another connection holds
    SQLite's write lock, and this store waits only 0.1 s for it."""
    url = parse_store_url(tmp_path / "served.sqlite")
    writer = TraceWriter(url, Metrics.create(), Redactor(), durable=True)
    await writer.start(SQLiteStore(url, timeout_s=0.1))
    request = CallRequest(model="m", messages=({"role": "user", "content": "q"},))
    events = [CallEvent("c0", request, DONE, None, False, 0.001, time.time())]
    await writer.record(decision("before"), events)
    blocker = sqlite3.connect(tmp_path / "served.sqlite", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreUnavailable, match="could not be logged"):
        await writer.record(decision("during"), events)
    assert writer.metrics.traces_failed._value.get() == 1
    blocker.execute("ROLLBACK")
    blocker.close()
    await writer.record(decision("after"), events)  # the store is back: it writes again
    await writer.aclose()
    with connect(url) as store:
        assert [d.id for d in store.decisions()] == ["before", "after"]


async def test_non_durable_writes_wait_out_an_outage_within_a_bound_and_count_drops(tmp_path: Path) -> None:
    url = parse_store_url(tmp_path / "served.sqlite")
    writer = TraceWriter(url, Metrics.create(), Redactor(), durable=False, queue_max=5, flush_interval_s=0.01)
    await writer.start(SQLiteStore(url, timeout_s=0.05))
    blocker = sqlite3.connect(tmp_path / "served.sqlite", isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    for i in range(20):
        await writer.record(decision(f"r{i:02d}"), [])
        await asyncio.sleep(0.01)
    assert writer.dropped > 0 and writer.metrics.traces_dropped._value.get() == writer.dropped
    blocker.execute("ROLLBACK")
    blocker.close()
    await writer.aclose()
    with connect(url) as store:
        kept = len(store.decisions())
    assert kept + writer.dropped == 20 and kept >= 5  # every request is either stored or counted as dropped


def test_service_settings_from_the_environment(monkeypatch) -> None:
    from flowfront.service.app import service_settings

    monkeypatch.setenv("FLOWFRONT_API_KEYS", " key-one-123 , key-two-456 ")
    monkeypatch.setenv("FLOWFRONT_FAULT_FAIL_MODELS", "a,b")
    monkeypatch.setenv("FLOWFRONT_MAX_FALLBACKS", "4")
    s = service_settings()
    assert (
        s.key_values() == ["key-one-123", "key-two-456"]
        and s.fault_fail_models == ["a", "b"]
        and s.max_fallbacks == 4
    )
    assert "key-one" not in repr(s)
    monkeypatch.setenv("FLOWFRONT_MAX_FALLBACKS", "99")
    with pytest.raises(SpecError, match="FLOWFRONT_MAX_FALLBACKS"):
        service_settings()
    monkeypatch.setenv("FLOWFRONT_MAX_FALLBACKS", "1")
    monkeypatch.setenv("FLOWFRONT_API_KEYS", "short")
    with pytest.raises(SpecError, match="8 characters"):
        service_settings()


def test_a_served_request_becomes_genai_spans(trained, workflows_dir, test_queries) -> None:
    """One span per request, a child per model call, named and attributed by the GenAI conventions
    (the SDK's in-memory exporter stands where an OTLP collector would)."""
    from fastapi.testclient import TestClient
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from flowfront.service.app import create_app
    from flowfront.service.config import ServiceSettings
    from flowfront.service.telemetry import Telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(ServiceSettings(**trained.model_dump()), workflows_dir, telemetry=Telemetry(provider))
    with TestClient(app) as c:
        body = c.post("/v1/workflows/qa-cascade/run", json={"query": test_queries[0]}).json()
    spans = exporter.get_finished_spans()
    [root] = [s for s in spans if s.parent is None]
    children = [s for s in spans if s.parent is not None]
    assert root.name == "workflow qa-cascade" and root.attributes["flowfront.response_id"] == body["trace_id"]
    assert root.attributes["flowfront.candidate"] == body["candidate"]["id"]
    assert (
        root.attributes["flowfront.router_generation"] and root.attributes["http.response.status_code"] == 200
    )
    # a repeat of an identical call in the run is answered by that call: no model call, no span
    assert sorted(s.attributes["gen_ai.request.model"] for s in children) == sorted(
        c["model"] for c in body["calls"] if not c["reused"]
    )
    assert sorted(
        (s.name, s.attributes["gen_ai.usage.input_tokens"], s.attributes["gen_ai.usage.output_tokens"])
        for s in children
    ) == sorted((f"chat {c['model']}", c["prompt_tokens"], c["completion_tokens"]) for c in body["calls"]
                if not c["reused"])
    assert any(c["reused"] for c in body["calls"])  # this candidate checks with the answering model
    for span in children:
        assert (
            span.parent.span_id == root.context.span_id and span.attributes["gen_ai.operation.name"] == "chat"
        )
        assert root.start_time <= span.start_time <= span.end_time <= root.end_time
