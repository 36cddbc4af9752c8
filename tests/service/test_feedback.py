"""Feedback in (API, file, Python), exploration with logged propensities, drift, off-policy estimates."""

from __future__ import annotations

import numpy as np
import pytest

from flowfront.router.offpolicy import Logged, policy_value, value_difference
from flowfront.service.drift import DriftThresholds, drift_report, psi
from flowfront.store import connect
from flowfront.store.testing import decision
from tests.service.support import make_client

RUN = "/v1/workflows/qa-cascade/run"


@pytest.fixture(scope="module")
def served(trained, workflows_dir, tmp_path_factory):
    """A client on its own served-request store, with a few answered requests."""
    store = tmp_path_factory.mktemp("feedback") / "served.sqlite"
    with make_client(trained, workflows_dir, TRACE_STORE=str(store)) as c:
        yield c, store


def _answer(client, query: str) -> str:
    r = client.post(RUN, json={"query": query})
    assert r.status_code == 200, r.text
    return r.json()["trace_id"]


def test_feedback_is_recorded_per_response_and_name_latest_wins(served, test_queries) -> None:
    client, store = served
    rid = _answer(client, test_queries[0])
    assert (
        client.post("/v1/feedback", json={"id": rid, "name": "correct", "value": 0.0}).json()["status"]
        == "recorded"
    )
    assert client.post("/v1/feedback", json={"id": f"chatcmpl-{rid}", "name": "correct", "value": 1.0,
                                             "comment": "re-graded"}).status_code == 200
    assert client.post("/v1/feedback", json={"id": rid, "name": "tone", "label": "curt"}).status_code == 200
    with connect(store) as s:
        rows = {f.name: f for f in s.feedback(ids=[rid])}
    assert (
        rows["correct"].value == 1.0
        and rows["correct"].comment == "re-graded"
        and rows["tone"].label == "curt"
    )


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"id": "never-served-0000", "name": "correct", "value": 1.0}, 404, None),
    ({"id": "x", "name": "correct", "value": 1.5}, 422, "value"),
    ({"id": "x", "name": "correct"}, 422, "body"),
    ({"id": "x", "name": "has space", "value": 1}, 422, "name"),
    ({"id": "x", "name": "correct", "value": 1, "comment": "y" * 5000}, 422, "comment"),
    ({"id": "x", "name": "correct", "value": 1, "extra": True}, 422, "extra"),
])
def test_bad_feedback_is_refused_naming_the_field(served, body, status, field) -> None:
    client, _ = served
    r = client.post("/v1/feedback", json=body)
    assert r.status_code == status, r.text
    if field is not None:
        assert r.json()["error"]["field"] == field


def test_a_flood_of_feedback_is_bounded_by_the_body_limit(served) -> None:
    client, _ = served
    r = client.post("/v1/feedback", content=b'{"id": "' + b"x" * 300_000 + b'"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_feedback_from_a_file_and_from_python(served, test_queries, tmp_path) -> None:
    import flowfront as ff
    from flowfront.errors import DataError, SpecError
    from flowfront.grades import import_feedback, read_feedback_file

    client, store = served
    ids = [_answer(client, q) for q in test_queries[1:4]]
    table = tmp_path / "grades.csv"
    table.write_text("id,name,value,label,comment\n" + "".join(f"{i},correct,1,,\n" for i in ids)
                     + "ghost-id-1234,correct,0,,\n")
    with connect(store) as s:
        recorded, unknown = import_feedback(s, read_feedback_file(table))
    assert recorded == 3 and unknown == ["ghost-id-1234"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"id": "a", "name": "correct", "value": 0.5}\n{"id": "b", "name": "correct", "value": 2}\n'
    )
    with pytest.raises(DataError, match=r"line 2, field 'value'"):
        read_feedback_file(bad)
    settings = client.app.state.shared.settings
    ff.feedback(ids[0], "judge", value=0.0, settings=settings)
    with pytest.raises(DataError, match="no served response"):
        ff.feedback("ghost-id-1234", value=1.0, settings=settings)
    with pytest.raises(SpecError, match="value"):
        ff.feedback(ids[0], value=-1.0, settings=settings)


def test_exploration_logs_propensities_and_keeps_hard_limits(
    trained, workflows_dir, test_queries, tmp_path
) -> None:
    epsilon = 0.5
    store = tmp_path / "served.sqlite"
    with make_client(trained, workflows_dir, TRACE_STORE=str(store), EXPLORE=str(epsilon)) as c:
        limit = float(
            np.median(
                [x["latency_s"] for x in c.get("/v1/workflows/qa-cascade/frontier").json()["candidates"]]
            )
        )
        for q in test_queries[:60]:
            assert c.post(RUN, json={"query": q, "preference": {"lambda": 0.1}}).status_code == 200
        for q in test_queries[60:100]:
            assert (
                c.post(
                    RUN, json={"query": q, "preference": {"max_latency_s": limit, "lambda": 0.0}}
                ).status_code
                == 200
            )
    with connect(store) as s:
        rows = s.decisions()
    explored = [d for d in rows if d.explored]
    assert 0.25 < len(explored) / len(rows) < 0.75  # about epsilon of them
    for d in rows:
        assert 0 < d.propensity <= 1 and (d.propensity < 1 or not d.explored)
        if not d.explored:
            assert d.propensity > 1 - epsilon  # the greedy choice: 1 - eps + eps/|eligible|
    for d in rows[60:]:  # exploring never broke the caller's limit (by the estimates it chose on)
        assert d.estimates is not None and d.estimates["latency_s"][d.candidate_index] <= limit + 1e-9


def test_drift_measures_the_task_mix_ood_calibration_and_latency() -> None:
    mix = {"a": 0.5, "b": 0.5}
    same = [decision(f"s{i}", task="a" if i % 2 else "b", strategy="router") for i in range(100)]
    shifted = [decision(f"t{i}", task="c", strategy="router", ood=True, latency_s=4.0) for i in range(100)]
    quiet = drift_report(same, [], mix, DriftThresholds())
    loud = drift_report(shifted, [], mix, DriftThresholds())
    assert quiet["mix"]["psi"] < 0.01 and not any(quiet["alarms"].values())
    assert (
        loud["mix"]["psi"] > 1
        and loud["alarms"]["mix"]
        and loud["alarms"]["ood"]
        and loud["alarms"]["latency"]
    )
    assert psi({"a": 1.0}, {"a": 1.0}) == 0.0
    from flowfront.store import Feedback

    graded = drift_report(same, [Feedback(d.id, "correct", 0.0) for d in same], mix, DriftThresholds())
    cal = graded["calibration"]
    assert cal["graded"] == 100 and cal["brier"] == pytest.approx(0.49) and graded["alarms"]["calibration"]
    assert (
        drift_report(same[:10], [], {"z": 1.0}, DriftThresholds())["alarms"]["mix"] is False
    )  # too few to say


def test_off_policy_estimates_recover_a_known_value() -> None:
    """Logged by a uniform policy over 3 actions, a target policy's IPS and DR values bracket its
    true value; DR with a good direct model is the tighter of the two."""
    rng = np.random.default_rng(0)
    n, k = 3000, 3
    true = rng.random((n, k))
    action = rng.integers(0, k, n)
    reward = (rng.random(n) < true[np.arange(n), action]).astype(float)
    log = Logged(action, np.full(n, 1 / k), reward, true + rng.normal(0, 0.05, (n, k)))
    target = true.argmax(axis=1)
    value = true[np.arange(n), target].mean()
    ips, dr = policy_value(log, target, "ips"), policy_value(log, target, "dr")
    assert ips.low <= value <= ips.high and dr.low <= value <= dr.high
    assert dr.high - dr.low < ips.high - ips.low
    diff = value_difference(log, target, np.zeros(n, dtype=int), "dr")
    assert diff.low > 0  # the best action beats always-0
    with pytest.raises(ValueError, match="propensities"):
        Logged(action, np.zeros(n), reward, true)
    # Each decision logged five times over (a query asked again, answered alike): resampling
    # decisions would claim five times the evidence; resampling the repeated queries does not.
    rep = np.repeat(np.arange(n), 5)
    twice = Logged(action[rep], np.full(5 * n, 1 / k), reward[rep], log.direct[rep])
    naive, clustered = (
        policy_value(twice, target[rep], "dr"),
        policy_value(twice, target[rep], "dr", groups=rep),
    )
    assert naive.high - naive.low < 0.6 * (dr.high - dr.low)
    assert clustered.high - clustered.low == pytest.approx(dr.high - dr.low, rel=0.2)


def test_decisions_carry_the_routed_group_for_drift(served, test_queries) -> None:
    client, store = served
    rid = _answer(client, test_queries[5])
    with connect(store) as s:
        [d] = s.decisions(ids=[rid])
    assert d.route_group in {"arc-challenge", "winogrande"}  # qa-cascade's two tasks
