"""Contract tests for every trace-store engine: one suite, run over SQLite and PostgreSQL.

Use from a test module: define a fixture ``open_store`` returning a function that opens a fresh,
empty store and, called with its URL, another handle on the same store (another process, as far
as the store can tell); then ``from flowfront.store.testing import *``. Needs pytest (the ``dev``
extra); nothing at run time imports this module.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from flowfront.errors import StoreError
from flowfront.redact import Redactor
from flowfront.store import Decision, Feedback, ServedCall, Trace, TraceStore
from flowfront.store.schema import POSTGRES, SQLITE, ddl

__all__ = ["TestStoreContract", "decision", "served_call", "trace"]

OpenStore = Callable[..., TraceStore]


def trace(
    key: str,
    *,
    prompt: str | None = None,
    model: str = "m",
    budget: int | None = None,
    source: str = "live",
    response: str = "an answer",
    created_at: float = 0.0,
    **extra: Any,
) -> Trace:
    return Trace(key=key, prompt_key=prompt or f"p-{key}", model=model, budget=budget,
                 request={"messages": [{"role": "user", "content": f"q {key}"}], **extra.pop("request", {})},
                 response=response, prompt_tokens=3, completion_tokens=4, latency_s=0.5, cost_usd=0.001,
                 source=source, query_id=f"q-{key}", created_at=created_at, **extra)


def decision(rid: str, *, workflow: str = "wf", created_at: float | None = None, query: str = "what is 2+2?",
             **extra: Any) -> Decision:
    fields: dict[str, Any] = dict(
        id=rid,
        created_at=time.time() if created_at is None else created_at,
        workflow=workflow,
        endpoint="run",
        query=query,
        task=None,
        preference={"lambda": 0.2},
        strategy="router",
        generation="g1",
        frontier_hash="f1",
        execution="parallel",
        candidate="c1",
        candidate_index=1,
        first_candidate="c1",
        estimates={"accuracy": [0.5, 0.7], "latency_s": [1.0, 2.0], "cost_usd": [0.1, 0.2]},
        propensity=1.0,
        explored=False,
        ood=False,
        hinted=False,
        feasible=True,
        latency_s=2.0,
        latency_wall_s=0.01,
        cost_usd=0.2,
        status=200,
        error=None,
        fallbacks=[],
        checkpoints=[],
        answer="4",
        replica="host:1",
    )
    fields.update(extra)
    return Decision(**fields)


def served_call(rid: str, seq: int = 0, **extra: Any) -> ServedCall:
    fields: dict[str, Any] = dict(
        trace_id=rid, seq=seq, candidate="c1", node="answer", model="m", budget=None, prompt_key=f"pk-{rid}",
        request={"messages": [{"role": "user", "content": "what is 2+2?"}]}, response="4", prompt_tokens=5,
        completion_tokens=1, latency_s=1.0, latency_source="modeled", cost_usd=0.2, score=1.0, error=None,
        wall_s=0.001, created_at=time.time())
    fields.update(extra)
    return ServedCall(**fields)


def _got(store: TraceStore, key: str) -> Trace:
    found = store.get(key)
    assert found is not None, f"no trace {key!r}"
    return found


class TestStoreContract:
    """Every engine must pass all of these (``open_store`` is the engine's fixture)."""

    def test_traces_round_trip_and_the_latest_write_wins(self, open_store: OpenStore) -> None:
        with open_store() as s:
            s.put_many([trace("a"), trace("b", prompt="p-a", budget=16), trace("c", model="n")])
            assert _got(s, "a").response == "an answer" and _got(s, "a").request == trace("a").request
            assert {t.key for t in s.by_prompt("p-a")} == {"a", "b"}
            s.put(trace("a", response="newer"))
            assert _got(s, "a").response == "newer" and s.count() == 3 and s.count("live") == 3
            assert {t.key for t in s.iter_traces(models=["m"])} == {"a", "b"}
            assert {t.key for t in s.iter_traces(unlimited_only=True)} == {"a", "c"}
            assert s.get("missing") is None

    def test_secrets_never_reach_the_store(self, open_store: OpenStore) -> None:
        planted = "sk-" + "abcdefghij" * 3
        with open_store(redactor=Redactor(["s3cret-value-99"])) as s:
            s.put(trace("a", response=f"key {planted}", error="s3cret-value-99 leaked",
                        request={"note": "s3cret-value-99"}))
            s.put_served([decision("r1", query=f"my key is {planted}", answer="s3cret-value-99")],
                         [served_call("r1", response=planted)])
            got, d, c = _got(s, "a"), s.decisions()[0], s.served_calls("r1")[0]
            blob = orjson.dumps(
                [got.request, got.response, got.error, d.query, d.answer, c.response]
            ).decode()
            assert planted not in blob and "s3cret-value-99" not in blob and "[redacted]" in blob

    def test_queries_keep_their_order_and_imports_their_summary(self, open_store: OpenStore) -> None:
        with open_store() as s:
            rows = [(f"q{i}", f"text {i}", "t", "train", None) for i in (3, 1, 2)]
            s.put_queries("src", rows)
            assert [r[0] for r in s.queries("src")] == ["q3", "q1", "q2"]
            s.put_queries("src", [("q1", "edited", "t", "test", "ref")])
            assert s.queries("src")[1] == ("q1", "edited", "t", "test", "ref")
            s.record_import("src", "h1", {"rows": 3})
            assert s.import_record("src") == ("h1", {"rows": 3})
            s.put(trace("x", source="src"))
            assert s.models_per_query("src") == {"q-x": {"m"}}
            s.delete_source("src")
            assert s.queries("src") == [] and s.import_record("src") is None and s.count("src") == 0

    def test_a_live_call_is_claimed_by_one_holder_until_it_ends(self, open_store: OpenStore) -> None:
        with open_store() as first, open_store(first.url) as second:
            assert first.claim_intent("pk", "m", 64)
            assert first.claim_intent("pk", "m", 64)  # the holder may ask again
            assert not second.claim_intent("pk", "m", 64)  # held and fresh: not yours
            first.heartbeat(["pk"])
            assert not second.claim_intent("pk", "m", 64, lease_s=60)
            first.end_intent("pk")  # the call failed: someone else may make it
            assert second.claim_intent("pk", "m", 64)
            second.put_ending_intent(trace("t", prompt="pk"))
            assert first.claim_intent("pk", "m", 64) and first.get("t") is not None

    def test_a_claim_nobody_refreshes_is_taken_over(self, open_store: OpenStore) -> None:
        with open_store() as first, open_store(first.url) as second:
            assert first.claim_intent("pk", "m", None)
            time.sleep(0.05)
            assert second.claim_intent("pk", "m", None, lease_s=0.01)  # the first holder went quiet
            assert not first.claim_intent("pk", "m", None, lease_s=60)
            assert [row[0] for row in second.stale_intents(lease_s=0.0)] == ["pk"]
            assert second.stale_intents(lease_s=60) == []

    def test_concurrent_claims_have_exactly_one_winner(self, open_store: OpenStore) -> None:
        with open_store() as base:
            handles = [open_store(base.url) for _ in range(6)]
            wins: list[bool] = []
            barrier = threading.Barrier(len(handles))

            def claim(h: TraceStore) -> None:
                barrier.wait()
                wins.append(h.claim_intent("contended", "m", None, lease_s=60))

            threads = [threading.Thread(target=claim, args=(h,)) for h in handles]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for h in handles:
                h.close()
            assert sorted(wins) == [False] * 5 + [True]

    def test_decisions_and_their_calls_are_written_together(self, open_store: OpenStore) -> None:
        with open_store() as s:
            now = time.time()
            s.put_served(
                [
                    decision("r1", created_at=now - 7200),
                    decision("r2", workflow="other", created_at=now - 60),
                ],
                [served_call("r1", 0), served_call("r1", 1), served_call("r2", 0)],
            )
            assert s.count_served() == (2, 3)
            assert [d.id for d in s.decisions(since=now - 3600)] == ["r2"]
            assert [d.id for d in s.decisions(until=now - 3600)] == ["r1"]
            assert [d.id for d in s.decisions(workflow="wf")] == ["r1"]
            assert [d.id for d in s.decisions(ids=["r2", "nope"])] == ["r2"]
            got = s.decisions(ids=["r1"])[0]
            assert got == decision("r1", created_at=got.created_at)
            assert got.estimates is not None and got.estimates["accuracy"] == [0.5, 0.7]
            assert [c.seq for c in s.served_calls("r1")] == [0, 1]
            with pytest.raises(StoreError):  # one bad row: neither the decision nor any call is kept
                s.put_served([decision("r3")], [served_call("r3"), served_call("r3", 1, model=None)])
            assert s.decisions(ids=["r3"]) == [] and s.served_calls("r3") == []

    def test_feedback_keeps_the_latest_grade_per_name_and_refuses_unknown_ids(
        self, open_store: OpenStore
    ) -> None:
        with open_store() as s:
            s.put_served([decision("r1"), decision("r2")], [])
            assert s.put_feedback([Feedback("r1", "correct", 1.0), Feedback("ghost", "correct", 0.0)]) == [
                "ghost"
            ]
            first = s.feedback(ids=["r1"])[0]
            time.sleep(0.01)
            assert (
                s.put_feedback(
                    [
                        Feedback("r1", "correct", 0.0, comment="on reflection"),
                        Feedback("r1", "judge", label="good"),
                        Feedback("r2", "correct", 1.0),
                    ]
                )
                == []
            )
            rows = {(f.id, f.name): f for f in s.feedback()}
            assert len(rows) == 3 and rows["r1", "correct"].value == 0.0
            assert rows["r1", "correct"].created_at == first.created_at < rows["r1", "correct"].updated_at
            assert rows["r1", "judge"].label == "good" and [f.id for f in s.feedback(name="judge")] == ["r1"]
            assert s.feedback(ids=[]) == []

    def test_the_served_generation_is_shared_and_only_moves_forward(self, open_store: OpenStore) -> None:
        with open_store() as a, open_store(a.url) as b:
            assert a.generation() == 0 and a.ensure_generation() == 1 and b.ensure_generation() == 1
            assert b.bump_generation() == 2 and a.generation() == 2 and a.bump_generation() == 3

    def test_prune_by_age_then_size_and_a_decision_goes_with_its_calls(self, open_store: OpenStore) -> None:
        with open_store() as s:
            old = time.time() - 10 * 86400
            s.put_many([trace(f"old{i}", created_at=old) for i in range(5)] + [trace("new")])
            assert s.prune(max_age_s=86400) == 5 and s.count() == 1
            s.put_served([decision("gone", created_at=old), decision("kept")],
                         [served_call("gone"), served_call("kept")])
            s.put_feedback([Feedback("gone", "correct", 1.0), Feedback("kept", "correct", 1.0)])
            assert s.prune_served(max_age_s=86400) == 1
            assert [d.id for d in s.decisions()] == ["kept"] and [c.trace_id for c in s.served_calls()] == [
                "kept"
            ]
            assert [f.id for f in s.feedback()] == ["kept"]
            s.put_served(
                [decision(f"bulk{i}", created_at=old + i, query=os.urandom(1000).hex()) for i in range(300)],
                [],
            )
            s.prune_served(max_bytes=200_000)
            left = s.decisions()
            assert 0 < len(left) < 301 and left[-1].id == "kept"  # the oldest went first

    def test_a_store_of_a_newer_schema_is_refused_in_one_line(self, open_store: OpenStore) -> None:
        with open_store() as s:
            url = s.url
            with s._transaction() as tx:
                tx.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
        with pytest.raises(StoreError, match="schema version 99, newer than") as info:
            open_store(url)
        assert "\n" not in str(info.value)

    def test_a_version_1_store_is_migrated_in_place(self, open_store: OpenStore, v1_store_url: str) -> None:
        # v1_store_url: a store the engine's fixture wrote with the version-1 schema (ddl(1, ...)),
        # holding one recorded trace and one served call as version 1 kept them
        with open_store(v1_store_url) as s:
            assert s.schema_version() == 2
            assert _got(s, "recorded").response == "an answer"  # recorded calls stay
            assert s.count("serve") == 0  # served calls moved to their own table
            [call] = s.served_calls("rid-1")
            assert (call.seq, call.candidate, call.model, call.response) == (2, "c3", "m", "served text")
            assert s.claim_intent("pk", "m", None)  # the new intent columns work


def v1_rows() -> tuple[list[str], list[tuple[str, tuple[Any, ...]]]]:
    """What a version-1 store looked like: its DDL (SQLite) and rows, for the migration test."""
    served: dict[str, Any] = {
        "model": "m",
        "budget": None,
        "sampling": {},
        "trace_id": "rid-1",
        "workflow": "wf",
        "candidate": "c3",
        "call": 2,
        "wall_s": 0.01,
        "truncated": False,
        "messages": [{"role": "user", "content": "q"}],
    }
    insert = "INSERT INTO traces VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    rows = [
        (
            insert,
            (
                "recorded",
                "p1",
                "m",
                None,
                orjson.dumps({"messages": []}),
                "an answer",
                1,
                2,
                0.1,
                0.0,
                None,
                None,
                "live",
                "q1",
                1.0,
            ),
        ),
        (
            insert,
            (
                "served-key",
                "p2",
                "m",
                None,
                orjson.dumps(served),
                "served text",
                1,
                2,
                0.1,
                0.0,
                None,
                None,
                "serve",
                "rid-1",
                2.0,
            ),
        ),
        ("INSERT INTO meta VALUES ('schema_version', '1')", ()),
    ]
    return ddl(1, SQLITE), rows


def v1_ddl_postgres() -> list[str]:
    return ddl(1, POSTGRES)
