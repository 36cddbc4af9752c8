"""Fault injection: failing and hanging models, fallbacks, the deadline and the circuit breaker."""

from __future__ import annotations

import re
import time

import pytest

from flowfront.router.select import Preference
from tests.service.support import BENCH, RUN, expected_candidate, make_client


def _metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text output (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture(scope="module")
def target(router, test_queries) -> tuple[str, str, str]:
    """A query, the candidate the router picks for it at lambda 0, and a model that candidate calls."""
    _, _, frontier = router
    query = test_queries[5]
    cid = expected_candidate(router, query, Preference(lambda_=0.0))
    config = next(c.config for c in frontier.candidates if c.id == cid)
    return query, cid, config["nodes"]["answer"]["model"]


def test_failing_model_falls_back_and_the_breaker_opens_then_half_opens(
    trained, workflows_dir, target
) -> None:
    query, cid, model = target
    env = {"FAULT_FAIL_MODELS": model, "BREAKER_FAILURES": "2", "BREAKER_RESET_S": "1.0"}
    with make_client(trained, workflows_dir, **env) as c:
        # A candidate may call the model more than once per request (samples), so the breaker
        # opens after one or two requests; every one of them must still be answered.
        sent = 0
        while sent < 2:
            sent += 1
            r = c.post(RUN, json={"query": query, "preference": {"lambda": 0.0}})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["fell_back"] and r.headers["x-flowfront-fallback"] == "1"
            assert body["attempts"][0]["candidate"] == cid and body["attempts"][0]["model"] == model
            assert "injected" in body["attempts"][0]["error"]
            assert model not in {call["model"] for call in body["calls"]}
            if c.get("/readyz").json()["breakers"][model] == "open":
                break
        metrics = c.get("/metrics").text
        failed = _metric(metrics, "flowfront_backend_errors_total", model=model, kind="retryable")
        assert _metric(metrics, "flowfront_fallbacks_total", workflow=BENCH) == sent
        assert failed >= 2
        assert _metric(metrics, "flowfront_breaker_state", model=model) == 2  # open

        # Open: the model is not called at all; the request says which candidate it skipped.
        skipped = c.post(RUN, json={"query": query, "preference": {"lambda": 0.0}}).json()
        assert skipped["fell_back"] and skipped["attempts"][0]["error"].startswith(
            "skipped: circuit breaker open"
        )
        assert (
            _metric(c.get("/metrics").text, "flowfront_backend_errors_total", model=model, kind="retryable")
            == failed
        )

        time.sleep(1.1)
        assert c.get("/readyz").json()["breakers"][model] == "half-open"
        probe = c.post(RUN, json={"query": query, "preference": {"lambda": 0.0}}).json()
        # Its sibling calls in the same request (samples) are refused while the probe is out.
        assert probe["attempts"][0]["candidate"] == cid and model in probe["attempts"][0]["error"]
        metrics = c.get("/metrics").text
        # Half-open admits exactly one probe call; its failure opens the breaker again.
        assert _metric(metrics, "flowfront_backend_errors_total", model=model, kind="retryable") == failed + 1
        assert c.get("/readyz").json()["breakers"][model] == "open"
        assert _metric(metrics, "flowfront_fallbacks_total", workflow=BENCH) == sent + 2


def test_hanging_model_times_out_and_falls_back(trained, workflows_dir, target) -> None:
    query, cid, model = target
    with make_client(trained, workflows_dir, FAULT_HANG_MODELS=model, CALL_TIMEOUT_S="0.3") as c:
        started = time.perf_counter()
        r = c.post(RUN, json={"query": query, "preference": {"lambda": 0.0}})
        assert r.status_code == 200, r.text
        assert 0.3 <= time.perf_counter() - started < 5
        body = r.json()
        assert body["fell_back"] and "timed out" in body["attempts"][0]["error"]
        metrics = c.get("/metrics").text
        assert (
            _metric(metrics, "flowfront_backend_errors_total", model=model, kind="timeout") >= 1
        )  # one per sample
        assert _metric(metrics, "flowfront_fallbacks_total", workflow=BENCH) == 1


def test_deadline_covers_the_whole_request(trained, workflows_dir, target) -> None:
    query, _, model = target
    with make_client(trained, workflows_dir, FAULT_HANG_MODELS=model, CALL_TIMEOUT_S="30",
                     REQUEST_DEADLINE_S="0.5") as c:
        started = time.perf_counter()
        r = c.post(RUN, json={"query": query, "preference": {"lambda": 0.0}})
        assert r.status_code == 504 and r.headers["retry-after"] == "1"
        assert time.perf_counter() - started < 5
        err = r.json()["error"]
        assert "deadline" in err["message"] and err["retryable"] is True


def test_no_fallbacks_allowed_reports_the_failure(trained, workflows_dir, target) -> None:
    query, _, model = target
    with make_client(trained, workflows_dir, FAULT_FAIL_MODELS=model, MAX_FALLBACKS="0") as c:
        r = c.post(RUN, json={"query": query, "preference": {"lambda": 0.0}})
        assert r.status_code == 503 and r.json()["error"]["model"] == model and r.json()["error"]["retryable"]
