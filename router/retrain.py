"""``flowfront retrain``: a challenger from the offline outcome matrix plus graded served decisions,
compared with the serving champion, promoted only on evidence.

A graded decision (a decision with feedback ``correct``, else ``judge``) observed one candidate; its
row in the challenger's outcome matrix carries that grade and, for the candidates not served, the
mean grade they received on decisions of the same task (or routed group), shrunk towards the
logged estimate by ``IMPUTE_STRENGTH`` pseudo-observations (a direct-method imputation: where
exploration tried a candidate, what it earned; where not, what the router believed).

Two comparisons, then one rule (``decide``):

* off-policy, on graded decisions the challenger never learned from: the decisions are split in
  ``FOLDS`` folds by query text (a repeated query stays in one fold); for each fold a challenger
  is fitted on the offline matrix plus the other folds and judged on this one (cross-fitting),
  so every graded decision is held out once. Inverse propensity and doubly robust values of
  challenger and champion (``router.offpolicy``); the doubly robust direct model is the fold
  challenger's own estimates, one model for both policies; the bootstrap resamples distinct
  queries, not decisions (a query asked again is answered alike: its decisions are one cluster);
* offline, on the benchmark's test split: expected utility over the lambda sweep, paired, of the
  challenger fitted on every graded decision (the one that would go live).

Promote when the doubly robust difference (challenger - champion) has its 95% interval above 0
and the offline difference has its interval's upper end at or above ``-OFFLINE_TOLERANCE``
(not significantly worse than that). Anything else keeps the champion, and says why.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowfront.errors import RoutingError
from flowfront.router.base import OutcomeMatrix, Policy, expected_utility
from flowfront.router.offpolicy import Logged, policy_value, value_difference
from flowfront.router.select import Preference, Scale, utility
from flowfront.store import Decision, Feedback

__all__ = [
    "FOLDS",
    "Graded",
    "IMPUTE_STRENGTH",
    "MIN_GRADED",
    "OFFLINE_TOLERANCE",
    "Comparison",
    "bandit_matrix",
    "compare",
    "decide",
    "graded_decisions",
    "logged",
]

MIN_GRADED = 60  # graded decisions retrain needs: enough for each fold to judge a challenger on
FOLDS = 5
IMPUTE_STRENGTH = 5.0
OFFLINE_TOLERANCE = 0.01
GRADE_NAMES = ("correct", "judge")  # the grades retrain reads, first found wins


@dataclass(frozen=True)
class Graded:
    decision: Decision
    grade: float


def graded_decisions(decisions: list[Decision], feedback: list[Feedback], frontier_hash: str) -> list[Graded]:
    """Answered decisions on this frontier that have a usable grade, oldest first."""
    grades: dict[str, dict[str, float]] = defaultdict(dict)
    for f in feedback:
        if f.name in GRADE_NAMES and f.value is not None:
            grades[f.id][f.name] = float(f.value)
    out = []
    for d in decisions:
        if (
            d.status != 200
            or d.frontier_hash != frontier_hash
            or d.candidate_index is None
            or d.estimates is None
        ):
            continue
        by_name = grades.get(d.id, {})
        name = next((n for n in GRADE_NAMES if n in by_name), None)
        if name is not None:
            out.append(Graded(d, by_name[name]))
    return sorted(out, key=lambda g: (g.decision.created_at, g.decision.id))


def _lam(d: Decision) -> float:
    lam = d.preference.get("lambda")
    return float(lam) if lam is not None else 0.0


def logged(graded: list[Graded], scale: Scale, direct: tuple[np.ndarray, np.ndarray] | None = None) -> Logged:
    """Bandit feedback of the graded decisions: served action, propensity, realised utility (the
    grade minus the request's lambda times normalised realised latency) and the direct model:
    ``direct`` (accuracy, latency) estimates (Q, K), else the ones logged with each decision."""
    action = np.array([g.decision.candidate_index for g in graded], dtype=np.int64)
    propensity = np.array([g.decision.propensity for g in graded], dtype=float)
    lam = np.array([_lam(g.decision) for g in graded])
    realised = np.array([g.decision.latency_s if g.decision.latency_s is not None else
                         g.decision.estimates["latency_s"][g.decision.candidate_index] for g in graded])  # type: ignore[index]
    grade = np.array([g.grade for g in graded])
    if direct is not None:
        acc, lat = direct
    else:
        acc = np.array([g.decision.estimates["accuracy"] for g in graded])  # type: ignore[index]
        lat = np.array([g.decision.estimates["latency_s"] for g in graded])  # type: ignore[index]
    return Logged(action, propensity, utility(grade, realised, lam, scale),
                  utility(acc, lat, lam[:, None], scale))


def bandit_matrix(
    graded: list[Graded], like: OutcomeMatrix, *, default_task: str = "served"
) -> OutcomeMatrix:
    """Outcome rows for graded decisions, shaped like the offline matrix (same candidates)."""
    K = len(like.candidate_ids)
    task_of = [g.decision.task or g.decision.route_group or default_task for g in graded]
    sums: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for g, task in zip(graded, task_of, strict=True):
        cell = sums[task, g.decision.candidate_index]  # type: ignore[index]
        cell[0] += g.grade
        cell[1] += 1.0
    correct = np.zeros((len(graded), K))
    lat = np.zeros((len(graded), K))
    cost = np.zeros((len(graded), K))
    for i, (g, task) in enumerate(zip(graded, task_of, strict=True)):
        est = g.decision.estimates
        assert est is not None and g.decision.candidate_index is not None
        for c in range(K):
            total, n = sums.get((task, c), (0.0, 0.0))
            correct[i, c] = (total + IMPUTE_STRENGTH * est["accuracy"][c]) / (n + IMPUTE_STRENGTH)
        a = g.decision.candidate_index
        correct[i, a] = g.grade
        lat[i] = est["latency_s"]
        cost[i] = est["cost_usd"]
        if g.decision.latency_s is not None:
            lat[i, a] = g.decision.latency_s
        if g.decision.cost_usd is not None:
            cost[i, a] = g.decision.cost_usd
    digest = hashlib.sha256("|".join(g.decision.id for g in graded).encode()).hexdigest()[:12]
    tasks = task_of if like.tasks is not None else None
    return OutcomeMatrix([f"served:{g.decision.id}" for g in graded], [g.decision.query for g in graded],
                         like.candidate_ids, like.candidates, np.clip(correct, 0.0, 1.0), lat, lat, cost,
                         source_hash=f"{like.source_hash}+served-{digest}", tasks=tasks)


def concat(a: OutcomeMatrix, b: OutcomeMatrix) -> OutcomeMatrix:
    if a.candidate_ids != b.candidate_ids:
        raise RoutingError("the served decisions were made over other candidates than the offline matrix",
                           hint="retrain on decisions made with the current frontier")
    tasks = None if a.tasks is None or b.tasks is None else [*a.tasks, *b.tasks]
    return OutcomeMatrix(
        [*a.query_ids, *b.query_ids],
        [*a.texts, *b.texts],
        a.candidate_ids,
        a.candidates,
        np.vstack([a.correct, b.correct]),
        np.vstack([a.latency_sequential_s, b.latency_sequential_s]),
        np.vstack([a.latency_parallel_s, b.latency_parallel_s]),
        np.vstack([a.cost_usd, b.cost_usd]),
        source_hash=b.source_hash,
        tasks=tasks,
    )


def choices(policy: Policy, X: np.ndarray, graded: list[Graded], scale: Scale) -> np.ndarray:
    """The candidate ``policy`` picks for each graded decision, under that request's preference."""
    out = np.zeros(len(graded), dtype=np.int64)
    by_pref: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(graded):
        by_pref[repr(sorted(g.decision.preference.items()))].append(i)
    for rows in by_pref.values():
        pref = Preference.model_validate({**graded[rows[0]].decision.preference, "on_infeasible": "nearest"})
        hints = [graded[i].decision.task for i in rows]
        out[rows] = np.asarray(policy.select(X[rows], pref, scale, hints=hints).index)
    return out


@dataclass
class Comparison:
    """Both comparisons of a challenger with the champion."""

    offpolicy: dict[str, Any] = field(default_factory=dict)
    offline: dict[str, Any] = field(default_factory=dict)


def folds_of(graded: list[Graded], folds: int = FOLDS) -> np.ndarray:
    """Fold of each graded decision, by its query text (the same query always lands in the same fold)."""
    return np.array(
        [int(hashlib.sha256(g.decision.query.encode()).hexdigest()[:8], 16) % folds for g in graded]
    )


def offpolicy(champion: Policy, fit: Callable[[np.ndarray], Policy], X: np.ndarray, graded: list[Graded],
              scale: Scale, *, seed: int = 0, folds: int = FOLDS) -> dict[str, Any]:
    """Cross-fitted inverse propensity and doubly robust values of the challenger ``fit`` makes
    from the rows it is given (indices into ``graded``) and of the champion (module docstring)."""
    fold = folds_of(graded, folds)
    parts = []
    for f in range(folds):
        held = np.flatnonzero(fold == f)
        if len(held) == 0:
            continue
        rows = [graded[i] for i in held]
        policy = fit(np.flatnonzero(fold != f))
        # The fold challenger's estimates are the direct model for both policies: the champion's own
        # are what drift made wrong, and a direct model that favours the policy it came from decides
        # the comparison. It never saw these decisions.
        pred = policy.predict(X[held], hints=[g.decision.task for g in rows])
        parts.append(
            (
                logged(rows, scale, (pred.accuracy, pred.latency_s)),
                choices(policy, X[held], rows, scale),
                choices(champion, X[held], rows, scale),
                np.array([g.decision.query for g in rows]),
            )
        )
    log = Logged(*(np.concatenate([getattr(p[0], name) for p in parts])
                   for name in ("action", "propensity", "utility", "direct")))
    a_new, a_old, queries = (np.concatenate([p[i] for p in parts]) for i in (1, 2, 3))
    opts = {"seed": seed, "groups": queries}  # a repeated query is one cluster in the bootstrap
    return {
        "held_out_decisions": len(log.action),
        "folds": folds,
        "distinct_queries": len(set(queries)),
        "challenger": {e: policy_value(log, a_new, e, **opts).as_json() for e in ("ips", "dr")},
        "champion": {e: policy_value(log, a_old, e, **opts).as_json() for e in ("ips", "dr")},
        "difference": {e: value_difference(log, a_new, a_old, e, **opts).as_json() for e in ("ips", "dr")},
        "logged_mean_utility": float(log.utility.mean()),
        "min_propensity": float(log.propensity.min()),
    }


def offline(champion: Policy, challenger: Policy, X_test: np.ndarray, Y_test: OutcomeMatrix, scale: Scale,
            lambdas: np.ndarray, execution: str, *, seed: int = 0) -> dict[str, Any]:
    """Paired expected-utility difference on the offline test split, with a bootstrap interval."""
    from scipy.stats import bootstrap

    eu_new = expected_utility(challenger, X_test, Y_test, scale, lambdas, execution)  # type: ignore[arg-type]
    eu_old = expected_utility(champion, X_test, Y_test, scale, lambdas, execution)  # type: ignore[arg-type]
    diff = eu_new - eu_old
    if np.ptp(diff) > 0:
        ci = bootstrap(
            (diff,), np.mean, n_resamples=2000, method="percentile", random_state=seed
        ).confidence_interval
        low, high = float(ci.low), float(ci.high)
    else:
        low = high = float(diff.mean())
    return {
        "test_queries": len(diff),
        "challenger_eu": float(eu_new.mean()),
        "champion_eu": float(eu_old.mean()),
        "difference": {"value": float(diff.mean()), "low": low, "high": high},
    }


def compare(champion: Policy, challenger: Policy, X: np.ndarray, graded: list[Graded], X_test: np.ndarray,
            Y_test: OutcomeMatrix, scale: Scale, lambdas: np.ndarray, execution: str, *, seed: int = 0,
            fit: Callable[[np.ndarray], Policy] | None = None) -> Comparison:
    """Both comparisons. ``fit`` makes the fold challengers of the off-policy comparison; without
    it ``challenger`` is a fixed policy that learned from none of ``graded``."""
    return Comparison(offpolicy(champion, fit or (lambda rows: challenger), X, graded, scale, seed=seed),
                      offline(champion, challenger, X_test, Y_test, scale, lambdas, execution, seed=seed))


def decide(comparison: Comparison) -> tuple[bool, str]:
    """The promotion rule (module docstring): (promote?, why)."""
    dr = comparison.offpolicy["difference"]["dr"]
    off = comparison.offline["difference"]
    if off["high"] < -OFFLINE_TOLERANCE:
        return False, (f"worse offline: test-split expected utility {off['value']:+.4f} "
                       f"[{off['low']:+.4f}, {off['high']:+.4f}] is below -{OFFLINE_TOLERANCE}")
    if dr["low"] <= 0:
        return False, (f"not better on recent traffic: doubly robust difference {dr['value']:+.4f} "
                       f"[{dr['low']:+.4f}, {dr['high']:+.4f}] does not exclude 0")
    return True, (
        f"better on recent traffic (doubly robust {dr['value']:+.4f} [{dr['low']:+.4f}, {dr['high']:+.4f}]) "
        f"and not worse offline ({off['value']:+.4f} [{off['low']:+.4f}, {off['high']:+.4f}])"
    )


def retrain_job(settings: Any, benchmark: str, **options: Any) -> dict[str, Any]:
    """Fit a challenger, compare it with the serving champion, promote it only by :func:`decide`;
    write the report (markdown + JSON) beside the router and return it (options: :func:`retrain`)."""
    return retrain(settings, benchmark, **options)[0]


def retrain(settings: Any, benchmark: str, *, since_s: float | None = None, seed: int = 0,
            dry_run: bool = False, offline_exclude: frozenset[str] = frozenset(),
            train_exclude: frozenset[str] = frozenset(), min_graded: int = MIN_GRADED
            ) -> tuple[dict[str, Any], Any]:
    """:func:`retrain_job`, also returning the challenger (promoted or not). ``offline_exclude``
    and ``train_exclude`` name test and train query ids to leave out of the offline matrices (a
    simulation's way of saying what the offline data did not hold)."""
    import time

    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.router.artifact import load_router
    from flowfront.router.train import features, load_data, make_router

    bench = load_benchmark(benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    folder = settings.workspace.benchmark(bench.name)
    frontier = Frontier.load(folder.frontier(), expect_workflow_hash=bench.workflow.content_hash)
    champion = load_router(folder.router(), expect_inputs_hash=frontier.content_hash())
    graded = _graded(settings, bench.workflow.name, frontier.content_hash(), since_s, min_graded)
    data = load_data(settings, bench, "frontier", seed)
    assert data.test is not None and data.X_test is not None
    offline_rows = np.array([q not in train_exclude for q in data.train.query_ids])
    train, X_train = data.train.rows(np.flatnonzero(offline_rows)), data.X_train[offline_rows]
    X = features(settings, [g.decision.query for g in graded])
    execution = frontier.execution

    def fit(rows: np.ndarray) -> Policy:
        learn = [graded[i] for i in rows]
        if not learn:
            return make_router("frontier", seed=seed, execution=execution).fit(X_train, train)
        return make_router("frontier", seed=seed, execution=execution).fit(
            np.vstack([X_train, X[rows]]), concat(train, bandit_matrix(learn, train)))

    challenger = fit(np.arange(len(graded)))
    keep = np.array([q not in offline_exclude for q in data.test.query_ids])
    comparison = compare(champion, challenger, X, graded, data.X_test[keep],
                         data.test.rows(np.flatnonzero(keep)), data.scale, data.lambdas, execution, seed=seed,
                         fit=fit)
    promote, why = decide(comparison)
    report = {"benchmark": bench.name, "workflow": bench.workflow.name, "at": time.time(),
              "graded": len(graded), "learned_from": len(graded),
              "held_out": comparison.offpolicy["held_out_decisions"], "champion": champion.source_hash_,
              "offpolicy": comparison.offpolicy, "offline": comparison.offline,
              "rule": __doc__.split("Promote when", 1)[1].split("\n\n")[0].strip() if __doc__ else "",
              "promoted": bool(promote and not dry_run), "would_promote": promote, "reason": why}
    if promote and not dry_run:
        report["generation"] = _promote(settings, folder.router(), challenger, frontier.content_hash(),
                                        bench.workflow.content_hash, len(graded))
    report["report"] = _write_report(folder.root / "retrain", report)
    return report, challenger


def _graded(
    settings: Any, workflow: str, frontier_hash: str, since_s: float | None, least: int
) -> list[Graded]:
    """The graded decisions retrain learns from, or a one-line refusal when there are too few."""
    import time

    from flowfront.store import connect

    with connect(settings.served_store_url) as served:
        decisions = served.decisions(
            since=None if since_s is None else time.time() - since_s, workflow=workflow
        )
        feedback = served.feedback(ids=[d.id for d in decisions]) if decisions else []
    graded = graded_decisions(decisions, feedback, frontier_hash)
    if len(graded) < least:
        raise RoutingError(
            f"retrain needs at least {least} graded decisions of {workflow!r} on its current "
            f"frontier; it has {len(graded)}",
            hint="grade more (POST /v1/feedback, `flowfront feedback import`, `flowfront grade`)",
        )
    return graded


def _promote(
    settings: Any, folder: Any, challenger: Any, frontier_hash: str, workflow_hash: str, n: int
) -> int:
    """Swap the challenger in (validated first) and advance the shared generation, so every
    replica reloads it; returns that generation."""
    from flowfront.router.artifact import read_artifact, save_router
    from flowfront.store import connect

    save_router(challenger, folder, frontier_hash=frontier_hash, workflow_hash=workflow_hash,
                feature_config=read_artifact(folder).feature_config,  # the champion's: queries embed alike
                metrics={"strategy": "frontier", "retrained_from": n, **challenger.describe()},
                note=f"retrained on {n} graded decisions")
    with connect(settings.served_store_url) as served:
        return int(served.bump_generation())


def _write_report(out: Any, report: dict[str, Any]) -> str:
    import time

    import orjson

    from flowfront.artifacts import write_atomic

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(report["at"]))
    write_atomic(
        out / f"{stamp}.json", orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    write_atomic(out / f"{stamp}.md", _markdown(report).encode())
    return str(out / f"{stamp}.md")


def _markdown(r: dict[str, Any]) -> str:
    off, dr, ips = r["offline"], r["offpolicy"]["difference"]["dr"], r["offpolicy"]["difference"]["ips"]

    def row(name: str, part: dict[str, Any]) -> str:
        return f"| {name} | {part['value']:+.4f} | [{part['low']:+.4f}, {part['high']:+.4f}] |"

    lines = [
        f"# Retrain of {r['workflow']}",
        "",
        f"{r['graded']} graded decisions, learned from and judged on by cross-fitting in "
        f"{r['offpolicy']['folds']} folds (each decision judges a challenger that never saw it; the "
        f"challenger that would go live learned from all of them).",
        "",
        "| comparison (challenger - champion) | value | 95% interval |",
        "|---|---|---|",
        row("doubly robust, held-out decisions", dr),
        row("inverse propensity, held-out decisions", ips),
        row(f"expected utility, offline test split ({off['test_queries']} queries)", off["difference"]),
        "",
        f"Challenger doubly robust value {r['offpolicy']['challenger']['dr']['value']:.4f}, champion "
        f"{r['offpolicy']['champion']['dr']['value']:.4f}.",
        "",
        f"**Decision: {'promoted' if r['promoted'] else 'kept the champion'}.** {r['reason']}.",
        "",
        f"Rule: {r['rule']}",
    ]
    return "\n".join(lines) + "\n"
