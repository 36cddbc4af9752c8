"""``flowfront train``: fit one routing strategy on a benchmark's train split.

The outcome matrix (every candidate executed on every train query, on replay) is cached next to
the frontier under a name that carries the candidates' hash; the query features go through the
shared embedding cache. Strategies over the frontier use its candidates; the full-space ones and
the MasRouter/MaAS-style baselines use a uniform sample of the whole design space at least ten
times the frontier's size (all of it when the space is smaller). LightGBM routers are written as
an artifact (LightGBM text models + JSON); the other strategies are cheap to refit and are not.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from flowfront.benchmarks import Benchmark, load_benchmark
from flowfront.compile.artifact import Frontier, Profiles
from flowfront.errors import RoutingError
from flowfront.router.base import OUTCOMES_SCHEMA, OutcomeMatrix, Policy, expected_utility
from flowfront.router.registry import TRAINABLE, StrategyEntry, strategy_entry
from flowfront.router.select import Scale, lambda_sweep
from flowfront.settings import Settings
from flowfront.spec import Execution


@dataclass
class TrainingData:
    bench: Benchmark
    frontier: Frontier
    scale: Scale
    lambdas: np.ndarray
    train: OutcomeMatrix
    test: OutcomeMatrix | None  # None when only training was asked for
    X_train: np.ndarray
    X_test: np.ndarray | None


def make_router(strategy: str, *, seed: int = 0, execution: Execution = "parallel") -> Policy:
    return strategy_entry(strategy).factory(seed, execution)


def trainable_entry(strategy: str) -> StrategyEntry:
    entry = strategy_entry(strategy)
    if entry.fits_on_eval:
        raise RoutingError(
            f"strategy {strategy!r} is fitted on the outcomes it is judged on (an evaluation bound)",
            hint=f"train one of {', '.join(TRAINABLE)}",
        )
    return entry


def _candidates(
    settings: Settings, bench: Benchmark, frontier: Frontier, kind: str, seed: int
) -> tuple[list, list]:
    if kind == "frontier":
        return [c.config for c in frontier.candidates], [c.id for c in frontier.candidates]
    from flowfront.compile.proxy import Proxy
    from flowfront.compile.search import sample_configurations

    profiles = Profiles.load(
        settings.workspace.benchmark(bench.name).profiles, expect_workflow_hash=bench.workflow.content_hash
    )
    proxy = Proxy(bench.workflow, profiles, mode=frontier.proxy_mode)
    n = max(10 * len(frontier.candidates), 100)
    sample = sample_configurations(proxy, n, seed)
    return [c for c, _ in sample], [f"s{i}" for i in range(len(sample))]


def _matrix(settings: Settings, bench: Benchmark, candidates: list, ids: list, split: str) -> OutcomeMatrix:
    from flowfront.router.matrix import build_outcomes
    from flowfront.runtime import benchmark_backend, benchmark_queries, open_store, prepare_data

    # The schema version is part of the name, so a cache from an older layout is rebuilt, not misread.
    # The workflow's hash is part of it too: the same candidates under an edited prompt are new columns.
    wf = bench.workflow.content_hash
    digest = hashlib.sha256(
        orjson.dumps([OUTCOMES_SCHEMA, wf, candidates], option=orjson.OPT_SORT_KEYS)
    ).hexdigest()[:16]
    path = settings.workspace.benchmark(bench.name).outcomes(digest, split)
    if path.is_file():
        return OutcomeMatrix.load(path, expect_inputs_hash=digest, expect_workflow_hash=wf)
    with open_store(settings) as store:
        data = prepare_data(bench, store, settings)
        queries = benchmark_queries(bench, store, data, split)
        if not queries:
            raise RoutingError(
                f"the {split} split of {bench.name} is empty", hint="check the data and the split"
            )
        backend = benchmark_backend(bench, store, settings)
        matrix = build_outcomes(
            bench, candidates, ids, queries, backend, settings, source_hash=digest, progress=True
        )
    matrix.save(path, workflow_hash=wf)
    return matrix


def load_trajectories(settings: Settings, bench: Benchmark, frontier: Frontier, split: str):
    """The frontier candidates' runs at every checkpoint of one split (cached beside the outcome
    matrices; built on replay, so no model is called)."""
    from flowfront.router.trajectories import Trajectories, build_trajectories
    from flowfront.runtime import benchmark_backend, benchmark_queries, open_store, prepare_data

    wf = bench.workflow.content_hash
    candidates, ids = [c.config for c in frontier.candidates], [c.id for c in frontier.candidates]
    digest = hashlib.sha256(orjson.dumps(["checkpoints-1", wf, list(bench.workflow.checkpoint_nodes()),
                                          candidates], option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]
    path = settings.workspace.benchmark(bench.name).outcomes(digest, f"{split}.checkpoints")
    if path.is_file():
        return Trajectories.load(path, expect_inputs_hash=digest, expect_workflow_hash=wf)
    with open_store(settings) as store:
        queries = benchmark_queries(bench, store, prepare_data(bench, store, settings), split)
        traj = build_trajectories(bench, candidates, ids, queries, benchmark_backend(bench, store, settings),
                                  settings, source_hash=digest, progress=True)
    traj.save(path, workflow_hash=wf)
    return traj


def features(settings: Settings, texts: list[str]) -> np.ndarray:
    from flowfront.router.features import Embedder, FeatureConfig, featurize

    config = FeatureConfig()
    embedder = Embedder(config, cache_dir=settings.workspace.embeddings)
    return featurize(texts, config, embedder)


def load_data(settings: Settings, benchmark: str | Benchmark, kind: str, seed: int = 0, *,
              include_test: bool = True) -> TrainingData:
    """Outcome matrices (train, and test unless told) and features for one candidate set of a benchmark."""
    bench = load_benchmark(benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    frontier = Frontier.load(
        settings.workspace.benchmark(bench.name).frontier(), expect_workflow_hash=bench.workflow.content_hash
    )
    candidates, ids = _candidates(settings, bench, frontier, kind, seed)
    train = _matrix(settings, bench, candidates, ids, "train")
    test = _matrix(settings, bench, candidates, ids, "test") if include_test else None
    est = [c.estimates for c in frontier.candidates]
    lat = np.array([e.latency(frontier.execution) for e in est])
    cost = np.array([e.cost_usd for e in est])
    scale = Scale.from_estimates(lat, cost)
    lambdas = lambda_sweep(scale, np.array([e.accuracy for e in est]), lat, cost, n=9)
    return TrainingData(bench, frontier, scale, lambdas, train, test, features(settings, train.texts),
                        features(settings, test.texts) if test is not None else None)


def _probe_utility(data: TrainingData, strategy: str, seed: int, execution: Execution) -> float:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.train.query_ids))
    cut = int(0.8 * len(order))
    fit_rows, held = np.sort(order[:cut]), np.sort(order[cut:])
    probe = make_router(strategy, seed=seed, execution=execution).fit(
        data.X_train[fit_rows], data.train.rows(fit_rows)
    )
    return float(expected_utility(probe, data.X_train[held], data.train.rows(held), data.scale, data.lambdas,
                                  execution).mean())


def train_job(
    settings: Settings, benchmark: str | Benchmark, strategy: str, *, seed: int = 0
) -> tuple[Path | None, dict]:
    """Fit a strategy on the train split; report training time and a held-out utility: the
    cross-validated utility of the design the fit chose, where it chose one by cross-validation
    (every train query scored by a fit that never saw it), else that of a probe fit on 80% of the
    train split, scored on the rest."""
    entry = trainable_entry(strategy)
    started_all = time.perf_counter()
    data = load_data(settings, benchmark, entry.candidates, seed, include_test=False)
    execution = data.frontier.execution
    started = time.perf_counter()
    router = make_router(strategy, seed=seed, execution=execution).fit(data.X_train, data.train)
    seconds = time.perf_counter() - started
    described = router.describe()  # e.g. which success design won on validation, and by how much
    cv = described.get("cv_utility")
    if isinstance(cv, dict) and described.get("design") in cv:
        utility, heldout = (
            float(cv[described["design"]]),
            f"{described.get('cv_folds', 3)}-fold cross-validation",
        )
    else:
        utility, heldout = _probe_utility(data, strategy, seed, execution), "a 20% fold of the train split"
    metrics = {"strategy": strategy, "train_queries": len(data.train.query_ids),
               "candidates": len(data.train.candidate_ids), "fit_seconds": seconds,
               "total_seconds": time.perf_counter() - started_all,  # outcomes + embeddings + fits
               "heldout_fold_expected_utility": utility, "heldout": heldout, "lambdas": data.lambdas.tolist()}
    metrics |= described
    path = None
    progressive = None
    if strategy == "frontier" and data.bench.workflow.checkpoint_nodes():
        progressive = _checkpoint_routers(settings, data, router, seed, execution)
        metrics["checkpoints"] = progressive.describe()["checkpoints"]
    if entry.persisted:
        from flowfront.router.artifact import save_router
        from flowfront.router.features import FeatureConfig

        path = save_router(router, settings.workspace.benchmark(data.bench.name).router(strategy),
                           frontier_hash=data.frontier.content_hash(),
                           workflow_hash=data.bench.workflow.content_hash, feature_config=FeatureConfig(),
                           metrics=metrics, strategy=strategy, checkpoints=progressive)
    return path, metrics


def _checkpoint_routers(settings: Settings, data: TrainingData, upfront: Policy, seed: int,
                        execution: Execution) -> Policy:
    """The served router's checkpoint routers (``frontier-progressive`` over it), each kept only
    where it earns its place (router.progressive)."""
    traj = load_trajectories(settings, data.bench, data.frontier, "train")
    policy = make_router("frontier-progressive", seed=seed, execution=execution)
    return policy.fit(data.X_train, data.train, trajectories=traj, upfront=upfront)
