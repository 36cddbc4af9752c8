"""``flowfront eval``: every routing strategy side by side on one benchmark's held-out test split.

Each strategy is fitted on the train split only (a guard checks the query ids are disjoint) and
then asked, for every test query, which candidate to run: once per λ of the sweep and once per
latency budget (a hard ``max_latency_s``). The realised outcome of that candidate on that query
comes from the test outcome matrix (replay), so nothing is estimated at evaluation time.
:mod:`eval.summary` turns the realised outcomes into metrics with bootstrap intervals.

Candidate sets: frontier strategies choose among the frontier's candidates; full-space ones among
a uniform sample of the design space, drawn ONCE (seed 0) and shared by every seed, because a new
sample per seed would rebuild a large outcome matrix each time; only the strategies' own seeds
vary. The oracle sees the union of both sets, so it bounds every strategy; ``oracle-frontier``
(only when a sample is in play) is the ceiling of the frontier pool alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowfront.errors import RoutingError, SpecError
from flowfront.router.base import OutcomeMatrix, Policy
from flowfront.router.select import Preference, Scale, lambda_sweep
from flowfront.settings import Settings
from flowfront.spec import Execution

__all__ = ["REFERENCE_STRATEGIES", "Strategy", "strategy_from_name"]

# Always evaluated, whatever the caller asks for: the comparisons are made against them.
REFERENCE_STRATEGIES = ("static", "best-single")
DECISION_SAMPLE = 50  # test queries timed one row at a time for the decision latency
N_LAMBDAS = 9


@dataclass(frozen=True)
class Strategy:
    """One strategy to evaluate: how to build it and which candidates it chooses among.

    ``make(seed, execution)`` returns an unfitted router. ``candidates`` is ``"frontier"``,
    ``"sample"`` or ``"all"`` (their union; the oracle only). ``fit_on_test`` marks the oracle,
    the one strategy that by definition is fitted on the true test outcomes. ``hinted``: every
    test query comes with its task label as the caller's hint (what a caller who knows the task
    would send).
    """

    name: str
    make: Callable[[int, str], Policy]
    candidates: str = "frontier"
    seeded: bool = False
    fit_on_test: bool = False
    hinted: bool = False
    fit_of: str | None = (
        None  # reuse this strategy's fit for the same seed (the same router, asked otherwise)
    )
    reads_checkpoints: bool = False  # re-decides at checkpoints: fitted and judged on trajectories


@dataclass
class Run:
    """Realised outcomes of one fitted strategy: (L, Q) per λ and (NB, Q) per latency budget."""

    seed: int | None
    fit_seconds: float
    lam: dict[str, np.ndarray]
    budget: dict[str, np.ndarray]
    decision_ms: np.ndarray | None = None
    ood_share: float | None = None
    hinted_share: float | None = None
    switch_share: float | None = None  # of test decisions, the share that switched at a checkpoint
    design: str | None = None  # the success design a LightGBM router chose for this seed
    wall_seconds: float = 0.0  # fit + every selection + the decision-latency probe
    checkpoints: dict | None = None  # per checkpoint: used or not, and the cross-validation that said so
    switch_ceiling: dict | None = None  # what perfect switching at the checkpoints would add (test split)


@dataclass
class CandidateSet:
    """Outcome matrices and features of one candidate set (train is None for the union)."""

    test: OutcomeMatrix
    X_test: np.ndarray
    train: OutcomeMatrix | None = None
    X_train: np.ndarray | None = None
    traj_train: Any = None  # router.trajectories.Trajectories, when a strategy reads checkpoints
    traj_test: Any = None


@dataclass
class Context:
    """What every strategy is evaluated under."""

    execution: Execution
    scale: Scale
    lambdas: np.ndarray
    budgets: np.ndarray
    sets: dict[str, CandidateSet] = field(default_factory=dict)


def strategy_from_name(name: str) -> Strategy:
    """A :class:`Strategy` for a name of the registry (``router.registry.STRATEGIES``)."""
    from flowfront.router.registry import strategy_entry

    entry = strategy_entry(name)
    return Strategy(name, entry.factory, entry.candidates, entry.seeded, fit_on_test=entry.fits_on_eval,
                    fit_of="frontier" if entry.reads_checkpoints else None,
                    reads_checkpoints=entry.reads_checkpoints)


def with_hinted(plan: list[Strategy], sets: dict[str, CandidateSet]) -> list[Strategy]:
    """Where the data labels several tasks (one says nothing), two strategies that are handed each
    test query's task as the caller's hint, beside ``frontier``: ``frontier-hinted`` (the same
    router) and ``per-task`` (the router's group prior with the task given, i.e. per task the
    candidate with the best shrunk train means: the per-task best selection of the field)."""
    from flowfront.router.registry import STRATEGIES

    cs = sets.get("frontier")
    base = next((s for s in plan if s.name == "frontier"), None)
    if (
        base is None
        or cs is None
        or cs.test.tasks is None
        or cs.train is None
        or len(set(cs.train.tasks or ())) < 2
    ):
        return plan
    prior = STRATEGIES["frontier-prior"]
    return [
        *plan,
        Strategy("frontier-hinted", base.make, base.candidates, base.seeded, hinted=True, fit_of="frontier"),
        Strategy("per-task", prior.factory, prior.candidates, False, hinted=True),
    ]


def _oracle_frontier() -> Strategy:
    """The oracle restricted to the frontier: what routing over the frontier could at best reach."""
    oracle = strategy_from_name("oracle")
    return Strategy("oracle-frontier", oracle.make, "frontier", oracle.seeded, fit_on_test=True)


def plan_strategies(strategies: Sequence[str | Strategy] | None) -> list[Strategy]:
    from flowfront.router.registry import STRATEGIES

    asked = list(STRATEGIES) if strategies is None else list(strategies)
    plan = [s if isinstance(s, Strategy) else strategy_from_name(s) for s in asked]
    names = [s.name for s in plan]
    if len(set(names)) != len(names):
        raise SpecError(f"strategy names repeat: {names}", hint="name each strategy once")
    plan += [strategy_from_name(n) for n in REFERENCE_STRATEGIES if n not in names]
    if "oracle" not in names:
        plan.append(strategy_from_name("oracle"))
    if any(s.candidates == "sample" for s in plan):
        plan.append(_oracle_frontier())
    return plan


# --- data -------------------------------------------------------------------------------------


def check_disjoint(train: OutcomeMatrix, test: OutcomeMatrix) -> None:
    """Refuse to evaluate when a test query also appears in the train split."""
    shared = set(train.query_ids) & set(test.query_ids)
    if shared:
        raise RoutingError(
            f"{len(shared)} test queries are also in the train split (e.g. {sorted(shared)[0]!r})",
            hint="fix the benchmark's split: training must never see the test split",
        )


def load_sets(
    settings: Settings, benchmark: object, need_sample: bool, need_checkpoints: bool = False
) -> tuple[object, dict[str, CandidateSet]]:
    from flowfront.router.train import load_data, load_trajectories

    data = {"frontier": load_data(settings, benchmark, "frontier")}
    if need_sample:  # one fixed sample (seed 0): see the module docstring
        data["sample"] = load_data(settings, benchmark, "sample", 0)
    sets = {}
    for kind, d in data.items():
        check_disjoint(d.train, d.test)
        sets[kind] = CandidateSet(d.test, d.X_test, d.train, d.X_train)
    if need_sample and sets["sample"].test.query_ids != sets["frontier"].test.query_ids:
        raise RoutingError("the frontier and sample outcome matrices cover different test queries",
                           hint="delete <workdir>/<benchmark>/outcomes and re-run")
    sets["all"] = CandidateSet(_union([s.test for s in sets.values()]), sets["frontier"].X_test)
    d = data["frontier"]
    if need_checkpoints and d.bench.workflow.checkpoint_nodes():
        sets["frontier"].traj_train, sets["frontier"].traj_test = (
            load_trajectories(settings, d.bench, d.frontier, split) for split in ("train", "test"))
    return data["frontier"], sets


def _union(mats: list[OutcomeMatrix]) -> OutcomeMatrix:
    """Columns of several outcome matrices over the same queries, side by side."""
    if len(mats) == 1:
        return mats[0]
    first = mats[0]
    arrays = [np.concatenate([getattr(m, name) for m in mats], axis=1)
              for name in ("correct", "latency_sequential_s", "latency_parallel_s", "cost_usd")]
    return OutcomeMatrix(
        first.query_ids,
        first.texts,
        sum((m.candidate_ids for m in mats), []),
        sum((m.candidates for m in mats), []),
        *arrays,
        "+".join(m.source_hash for m in mats),
        first.tasks,
    )


def make_context(frontier, execution: Execution | None, budgets: Sequence[float] | None) -> Context:
    execution = execution or frontier.execution
    if execution not in ("parallel", "sequential"):
        raise SpecError(f"unknown execution model {execution!r}", hint="use parallel or sequential")
    est = [c.estimates for c in frontier.candidates]
    lat = np.array([e.latency(execution) for e in est])
    cost = np.array([e.cost_usd for e in est])
    scale = Scale.from_estimates(lat, cost)
    lambdas = lambda_sweep(scale, np.array([e.accuracy for e in est]), lat, cost, n=N_LAMBDAS)
    if budgets is None:  # spread geometrically: frontier latencies often span an order of magnitude
        b = np.unique(np.geomspace(max(scale.latency_min, 1e-3), max(scale.latency_max, 2e-3), 5))
    else:
        b = np.asarray(sorted(budgets), dtype=np.float64)
        if b.size == 0 or not np.all(np.isfinite(b) & (b > 0)):
            raise SpecError(f"latency budgets must be positive seconds, got {list(budgets)}",
                            hint="pass budgets such as 1.5 3 6")
    return Context(execution, scale, lambdas, b)


# --- running ----------------------------------------------------------------------------------


def _realised(Y: OutcomeMatrix, index: np.ndarray, execution: Execution) -> tuple[np.ndarray, ...]:
    rows = np.arange(len(Y.query_ids))
    idx = np.asarray(index)
    return Y.correct[rows, idx], Y.latency(execution)[rows, idx], Y.cost_usd[rows, idx]


def _chosen(router: Policy, cs: CandidateSet, preference: Preference, scale: Scale,
            hints: list[str] | None, switches: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The candidate each test query ends on (a progressive policy re-decides along the query's
    recorded run) and whether its upfront choice was feasible."""
    chosen = router.select(cs.X_test, preference, scale, hints=hints)
    if cs.traj_test is None or not hasattr(router, "realise"):
        return np.asarray(chosen.index), np.asarray(chosen.feasible)
    final, n = router.realise(cs.X_test, cs.traj_test, preference, scale, hints=hints)
    switches.append(n)
    return final, np.asarray(chosen.feasible)


def _outcomes(router: Policy, cs: CandidateSet, ctx: Context,
              hints: list[str] | None) -> tuple[dict, dict, float | None, float | None, float | None]:
    lam = {k: [] for k in ("correct", "latency_s", "cost_usd")}
    switches: list[int] = []
    pred = router.predict(cs.X_test, hints=hints)
    n = len(cs.test.query_ids)
    ood = None if pred.fallback is None else pred.n_fallback / n
    hinted = None if pred.hinted is None else pred.n_hinted / n
    for value in ctx.lambdas:  # a loop over the 9 lambdas; each select is vectorised over queries
        index, _ = _chosen(router, cs, Preference(lambda_=float(value)), ctx.scale, hints, switches)
        for key, arr in zip(lam, _realised(cs.test, index, ctx.execution), strict=True):
            lam[key].append(arr)
    bud = {k: [] for k in ("correct", "latency_s", "cost_usd", "infeasible", "over_budget")}
    for limit in ctx.budgets:
        index, feasible = _chosen(router, cs, Preference(max_latency_s=float(limit), on_infeasible="nearest"),
                                  ctx.scale, hints, switches)
        correct, latency, cost = _realised(cs.test, index, ctx.execution)
        for key, arr in zip(bud, (correct, latency, cost, ~feasible, latency > limit), strict=True):
            bud[key].append(arr)
    share = sum(switches) / (len(switches) * n) if switches else None
    return _stacked(lam), _stacked(bud), ood, hinted, share


def _switch_ceiling(router: Policy, cs: CandidateSet, ctx: Context) -> dict:
    """Utility over the λ sweep if, from the upfront choice, every checkpoint switched to the
    compatible candidate that realises the most (the test outcomes): no checkpoint router can add
    more on this frontier. Mean and standard error over test queries, minus the upfront choice."""
    from flowfront.router.progressive import follow
    from flowfront.router.select import utility

    T, Y = cs.traj_test, cs.test
    rows = np.arange(len(Y.query_ids))
    gain = np.zeros(len(rows))
    for lam in ctx.lambdas:
        start = np.asarray(router.select(cs.X_test, Preference(lambda_=float(lam)), ctx.scale).index)
        u = utility(Y.correct, Y.latency(ctx.execution), float(lam), ctx.scale)
        def best(_c: int, r: np.ndarray, _cur: np.ndarray, members: np.ndarray,
                 u: np.ndarray = u) -> np.ndarray:
            return np.where(members, u[r], -np.inf).argmax(axis=1)

        final, _ = follow(T, start, best, list(range(len(T.checkpoint_ids))))
        gain += u[rows, final] - u[rows, start]
    gain /= len(ctx.lambdas)
    se = float(gain.std(ddof=1) / np.sqrt(len(gain))) if len(gain) > 1 else 0.0
    return {"gain_over_upfront": float(gain.mean()), "se": se, "unit": "expected utility over the λ sweep",
            "measures": "switching to the best compatible candidate by the test outcomes (an upper bound)"}


def _stacked(rows: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack(v).astype(np.float64) for k, v in rows.items()}


def decision_latency(router: Policy, X: np.ndarray, preference: Preference, scale: Scale,
                     n: int = DECISION_SAMPLE) -> np.ndarray:
    """Milliseconds of ``select`` (predict + select) on single rows, for up to ``n`` spread queries.

    Features are given, so the embedding is NOT included (the router benchmark times it).
    """
    rows = np.unique(np.linspace(0, len(X) - 1, min(n, len(X))).astype(np.int64))
    router.select(X[rows[:1]], preference, scale)  # warm-up: first-call allocations are not per query
    out = np.empty(len(rows))
    for i, r in enumerate(rows):  # one request at a time, as the service sees them
        started = time.perf_counter()
        router.select(X[r : r + 1], preference, scale)
        out[i] = (time.perf_counter() - started) * 1e3
    return out


def run_strategy(strategy: Strategy, seed: int | None, ctx: Context, *, time_decisions: bool,
                 fitted: dict[tuple[str, int | None], tuple[Policy, float]] | None = None) -> Run:
    """Fit one strategy (train split only, except the oracle) and record its realised outcomes.

    ``fitted`` maps (strategy, seed) to a fitted policy and its fit time: a strategy with
    ``fit_of`` reuses that entry instead of fitting the same router again, and every fit is added."""
    cs = ctx.sets[strategy.candidates]
    started = wall = time.perf_counter()
    shared = None if fitted is None or strategy.fit_of is None else fitted.get((strategy.fit_of, seed))
    if shared is not None:
        router, fit_seconds = shared
    elif strategy.reads_checkpoints:
        router = None  # no upfront fit to share: the policy fits its own
    else:
        router = strategy.make(0 if seed is None else seed, ctx.execution)
        if strategy.fit_on_test:
            router.fit(cs.X_test, cs.test)
        else:
            check_disjoint(cs.train, cs.test)
            router.fit(cs.X_train, cs.train)
        fit_seconds = time.perf_counter() - started
    if strategy.reads_checkpoints:  # the upfront router it shares, then its checkpoint routers
        check_disjoint(cs.train, cs.test)
        policy = strategy.make(0 if seed is None else seed, ctx.execution)
        router = policy.fit(cs.X_train, cs.train, trajectories=cs.traj_train, upfront=router)
        fit_seconds = time.perf_counter() - started
    elif fitted is not None:
        fitted[strategy.name, seed] = (router, fit_seconds)
    lam, bud, ood, hinted, switched = _outcomes(router, cs, ctx, cs.test.tasks if strategy.hinted else None)
    decision = None
    if (
        time_decisions and not strategy.fit_on_test and not strategy.hinted
    ):  # the oracle only answers for the whole split
        mid = Preference(lambda_=float(np.median(ctx.lambdas)))
        decision = decision_latency(router, cs.X_test, mid, ctx.scale)
    reads = strategy.reads_checkpoints and cs.traj_test is not None
    ceiling = _switch_ceiling(router, cs, ctx) if reads else None
    about = router.describe()
    return Run(seed, fit_seconds, lam, bud, decision, ood, hinted, switched, about.get("design"),
               time.perf_counter() - wall, checkpoints=about.get("checkpoints"), switch_ceiling=ceiling)


def run_all(plan: list[Strategy], ctx: Context, seeds: Sequence[int], progress: bool) -> dict[str, list[Run]]:
    jobs = [(s, seed) for s in plan for seed in (seeds if s.seeded else [None])]
    runs: dict[str, list[Run]] = {s.name: [] for s in plan}
    reused = {s.fit_of for s in plan if s.fit_of}
    fitted: dict[tuple[str, int | None], tuple[Policy, float]] = {}

    def one(s: Strategy, seed: int | None) -> None:
        runs[s.name].append(run_strategy(s, seed, ctx, time_decisions=not runs[s.name],
                                         fitted=fitted if s.name in reused or s.fit_of else None))

    if not progress:
        for s, seed in jobs:
            one(s, seed)
        return runs
    from flowfront.progress import progress_bar

    with progress_bar("eval", total=len(jobs)) as advance:
        for s, seed in jobs:
            one(s, seed)
            advance(1, note=f"{s.name} seed {'-' if seed is None else seed}")
    return runs
