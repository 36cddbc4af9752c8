"""The LightGBM router on a real qa-cascade outcome matrix, with real MiniLM features.

One module-scoped fixture profiles and compiles qa-cascade from the recorded RouterBench data,
builds the train/test outcome matrices on a seeded subset of queries (to stay well under a
minute on two busy cores) and embeds them with the real Embedder (torch variant, 32 tokens, a
tmp cache), then fits one router (both designs, task labels as groups) that most tests share.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from flowfront.errors import RoutingError
from flowfront.router.artifact import load_router, save_router
from flowfront.router.base import OutcomeMatrix
from flowfront.router.features import Embedder, FeatureConfig, featurize
from flowfront.router.model import LightGBMRouter, candidate_features
from flowfront.router.querymap import QueryMap
from flowfront.router.select import Preference, Scale, select

ROOT = Path(__file__).parents[2]
FAST = dict(n_estimators=60, early_stopping_rounds=10, num_threads=1, min_data_in_leaf=20)
FEATURES = FeatureConfig()  # the static token vectors that ship: no torch


@pytest.fixture(scope="module")
def data(compiled_settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from flowfront.benchmarks import load_benchmark
    from flowfront.compile.artifact import Frontier
    from flowfront.router.matrix import build_outcomes
    from flowfront.runtime import benchmark_queries, load_cards, make_backend, open_store, prepare_data

    settings = compiled_settings
    frontier = Frontier.load(settings.workspace.benchmark("qa-cascade").frontier())
    bench = load_benchmark("qa-cascade", settings.configs_dir)
    out, tasks = {}, {}
    with open_store(settings) as store:
        prepared = prepare_data(bench, store, settings)
        backend = make_backend(
            "replay", store, load_cards(settings), settings, models=bench.workflow.all_models()
        )
        for split, n in (("train", 300), ("test", 100)):
            queries = benchmark_queries(bench, store, prepared, split)
            queries = [
                queries[i] for i in np.sort(np.random.default_rng(7).choice(len(queries), n, replace=False))
            ]
            tasks[split] = np.array([q.task for q in queries])
            out[split] = build_outcomes(bench, [c.config for c in frontier.candidates],
                                        [c.id for c in frontier.candidates], queries, backend, settings,
                                        source_hash=frontier.content_hash())
    embedder = Embedder(FEATURES, tmp_path_factory.mktemp("embeddings"))
    X = {split: featurize(Y.texts, FEATURES, embedder) for split, Y in out.items()}
    return {
        "train": out["train"],
        "test": out["test"],
        "Xtr": X["train"],
        "Xte": X["test"],
        "frontier": frontier,
        "tasks": tasks,
    }


@pytest.fixture(scope="module")
def router(data: dict) -> LightGBMRouter:
    # design_folds=0: the three designs compete on the valid fold (cheaper; CV has its own test)
    return LightGBMRouter(design="auto", design_folds=0, **FAST).fit(data["Xtr"], data["train"],
                                                                     groups=data["tasks"]["train"])


@pytest.fixture(scope="module")
def scale(router: LightGBMRouter) -> Scale:
    return Scale.from_estimates(router.static_latency_s_, router.static_cost_usd_)


@pytest.fixture(scope="module")
def saved(router: LightGBMRouter, data: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("artifact") / "router"
    return save_router(
        router,
        folder,
        frontier_hash=data["frontier"].content_hash(),
        workflow_hash="w",
        feature_config=FEATURES,
        metrics={"note": "test"},
    )


def test_predictions_are_probabilities_of_shape_q_by_k(router: LightGBMRouter, data: dict) -> None:
    pred = router.predict(data["Xte"])
    shape = data["test"].correct.shape
    assert pred.accuracy.shape == pred.latency_s.shape == pred.cost_usd.shape == shape
    assert ((pred.accuracy >= 0) & (pred.accuracy <= 1)).all()
    assert (pred.latency_s >= 0).all() and (pred.cost_usd >= 0).all()
    # per-query estimates: the router does not predict the same row for every query
    assert np.ptp(pred.accuracy, axis=0).max() > 0.01


def test_single_row_prediction_matches_batch(router: LightGBMRouter, data: dict) -> None:
    batch = router.predict(data["Xte"][:3]).accuracy
    one = router.predict(data["Xte"][1]).accuracy
    np.testing.assert_allclose(one[0], batch[1], rtol=1e-12)


def test_design_choice_is_recorded_from_validation_routing_utility(router: LightGBMRouter) -> None:
    vm = router.validation_metrics_
    assert set(vm["valid_log_loss"]) == set(vm["valid_utility"]) == {"per-candidate", "conditioned", "prior"}
    best = max(vm["valid_utility"].values())
    assert vm["valid_utility"][router.design_] == best
    if vm["valid_utility"]["prior"] == best:  # boosting must beat the prior to be kept
        assert router.design_ == "prior"
    assert vm["valid_utility"]["prior"] == vm["valid_utility_prior"]
    # Utilities are means of correct - lambda * normalised latency: at most 1, and the boosted
    # designs start from the prior, so neither is far below the prior's own choices.
    for utility in vm["valid_utility"].values():
        assert utility <= 1.0 and utility >= vm["valid_utility_prior"] - 0.1


def test_calibration_keeps_or_improves_validation_brier(router: LightGBMRouter) -> None:
    briers = router.validation_metrics_["calib_brier"]
    chosen = router.validation_metrics_["calibration"]
    assert router.calibration_["method"] == chosen
    assert briers[chosen] <= briers["identity"]
    json.dumps(router.calibration_)  # plain numbers only
    grid = np.linspace(0, 1, 101)
    from flowfront.router.querymap import apply_calibration

    mapped = apply_calibration(grid, router.calibration_)
    assert (np.diff(mapped) >= -1e-12).all(), "a calibration map must be monotone"


def _with(Y: OutcomeMatrix, **fields: np.ndarray) -> OutcomeMatrix:
    return dataclasses.replace(Y, **fields)


def test_constant_candidates_and_regressor_use(data: dict) -> None:
    Y = data["train"]
    correct, latency = Y.correct.copy(), Y.latency_parallel_s.copy()
    correct[:, 0], correct[:, 1] = 1.0, 0.0
    latency[:, 2] = 3.0  # constant latency: the prior already says it
    varying = 3
    # a latency the features determine (the first text statistic: query length), so the regressor must win
    length = data["Xtr"][:, 384]
    # every candidate from `varying` on: the signal must not depend on how many candidates the front has
    latency[:, varying:] = (1.0 + 10.0 * (length - length.min()) / np.ptp(length))[:, None]
    router = LightGBMRouter(design="per-candidate", **FAST).fit(data["Xtr"], _with(Y, correct=correct,
                                                                                  latency_parallel_s=latency))
    pred = router.predict(data["Xte"])
    assert (pred.accuracy[:, 0] == 1.0).all() and (pred.accuracy[:, 1] == 0.0).all()
    assert isinstance(router.success_models_[0], float) and not isinstance(router.success_models_[4], float)
    assert router.latency_model_ is not None and router.regressor_meta_["latency"]["used"]
    # one regressor serves every candidate, so the constant one only comes out nearly constant
    assert np.abs(pred.latency_s[:, 2] / 3.0 - 1.0).mean() < 0.03
    test_length = data["Xte"][:, 384]
    assert np.corrcoef(pred.latency_s[:, varying], test_length)[0, 1] > 0.8


def test_query_independent_outcomes_need_no_regressor(data: dict) -> None:
    Y = data["train"]
    flat = np.tile(np.linspace(1.0, 2.0, len(Y.candidate_ids)), (len(Y.query_ids), 1))
    router = LightGBMRouter(**FAST).fit(data["Xtr"], _with(Y, latency_parallel_s=flat, cost_usd=flat * 1e-3))
    assert router.latency_model_ is None and router.cost_model_ is None
    np.testing.assert_allclose(router.predict(data["Xte"]).latency_s, np.tile(flat[0], (len(data["Xte"]), 1)))


def test_conditioned_design_with_soft_labels(data: dict) -> None:
    Y = data["train"]
    soft = np.clip(Y.correct * 0.8 + 0.1 * np.random.default_rng(0).random(Y.correct.shape), 0, 1)
    extra = np.arange(len(Y.candidate_ids), dtype=float)[:, None]  # e.g. proxy estimates
    router = LightGBMRouter(design="conditioned", **FAST).fit(data["Xtr"], _with(Y, correct=soft),
                                                              candidate_features=extra)
    assert router.design_ == "conditioned" and len(router.success_models_) == 1
    assert router.candidate_features_.shape[0] == len(Y.candidate_ids)
    acc = router.predict(data["Xte"]).accuracy
    assert acc.shape == data["test"].correct.shape and ((acc >= 0) & (acc <= 1)).all()


def test_candidate_features_one_hot_settings() -> None:
    configs = [{"nodes": {"a": {"model": "m1", "budget": None}}, "knobs": {"checker": "off"}},
               {"nodes": {"a": [{"model": "m1", "budget": 64}, {"model": "m2", "budget": 64}]},
                "knobs": {"checker": "on"}}]
    matrix, names = candidate_features(configs)
    assert matrix.shape == (2, len(names))
    row = dict(zip(names, matrix[1], strict=True))
    assert row["a[1].model=m2"] == 1 and row["knob.checker=on"] == 1 and row["a.model=m1"] == 0


def test_ood_noise_rows_get_the_static_choice(router: LightGBMRouter, data: dict, scale: Scale) -> None:
    X = data["Xte"][:40].copy()
    noise = np.random.default_rng(1).standard_normal((20, router.embedding_dim)).astype(np.float32)
    X[:20, : router.embedding_dim] = noise / np.linalg.norm(noise, axis=1, keepdims=True)
    mask = router.ood_mask(X)
    assert mask[:20].all()
    assert mask[20:].mean() <= 0.1
    pref = Preference.model_validate({"lambda": 0.3})
    result = router.select(X, pref, scale)
    static = select(router.static_accuracy_, router.static_latency_s_, router.static_cost_usd_, pref, scale)
    pred = router.predict(X)
    assert pred.n_fallback == int(mask.sum()) and (pred.fallback == mask).all()
    assert (result.index[mask] == static.index).all()
    off = LightGBMRouter(**{**router.get_params(), "ood_fallback": False})
    vars(off).update({k: v for k, v in vars(router).items() if k.endswith("_")})
    np.testing.assert_array_equal(off.select(X, pref, scale).index[~mask], result.index[~mask])


def test_round_trip_gives_identical_predictions(router: LightGBMRouter, saved: Path, data: dict,
                                                scale: Scale) -> None:
    loaded = load_router(saved, expect_inputs_hash=data["frontier"].content_hash())
    a, b = router.predict(data["Xte"]), loaded.predict(data["Xte"])
    for field in ("accuracy", "latency_s", "cost_usd"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(router.ood_mask(data["Xte"]), loaded.ood_mask(data["Xte"]))
    pref = Preference.model_validate({"lambda": 0.2})
    np.testing.assert_array_equal(router.select(data["Xte"], pref, scale).index,
                                  loaded.select(data["Xte"], pref, scale).index)
    meta = json.loads((saved / "router.json").read_text())
    assert meta["design"] == router.design_ and meta["kind"] == "router"
    assert np.load(saved / "reference.npy", allow_pickle=False).dtype == np.float16


def test_other_frontier_hash_is_refused(saved: Path, data: dict) -> None:
    with pytest.raises(RoutingError, match="0000000000000000") as err:
        load_router(saved, expect_inputs_hash="0000000000000000")
    assert data["frontier"].content_hash() in str(err.value) and "flowfront train" in str(err.value)


def _copy(saved: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(saved, tmp_path / "copy"))


def test_corrupt_or_missing_model_file_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    model = sorted((folder / "models").glob("*.txt"))[0]
    model.write_text(model.read_text()[:200])
    with pytest.raises(RoutingError, match="corrupt"):
        load_router(folder, expect_inputs_hash=None)
    model.unlink()
    with pytest.raises(RoutingError, match="missing"):
        load_router(folder, expect_inputs_hash=None)


def _write_signed(path: Path, meta: dict) -> None:
    """Rewrite router.json as a writer would (checksum recomputed), to reach the checks after it."""
    from flowfront.artifacts import checksum

    body = {k: v for k, v in meta.items() if k != "checksum"}
    path.write_text(json.dumps({**body, "checksum": checksum(body)}))


def test_schema_mismatch_or_an_edit_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    meta = json.loads((folder / "router.json").read_text())
    (folder / "router.json").write_text(json.dumps({**meta, "ood_threshold": 0.5}))
    with pytest.raises(RoutingError, match="checksum mismatch"):
        load_router(folder, expect_inputs_hash=None)
    (folder / "router.json").write_text(json.dumps({**meta, "schema_version": 99}))
    with pytest.raises(RoutingError, match="schema version 99"):
        load_router(folder, expect_inputs_hash=None)
    _write_signed(folder / "router.json", {**meta, "ood_threshold": "far"})
    with pytest.raises(RoutingError, match="ood_threshold"):
        load_router(folder, expect_inputs_hash=None)


def test_estimates_out_of_range_are_refused_even_when_signed(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    meta = json.loads((folder / "router.json").read_text())
    bad = {**meta, "static": {**meta["static"], "accuracy": [2.5] * len(meta["static"]["accuracy"])}}
    _write_signed(folder / "router.json", bad)
    with pytest.raises(RoutingError, match=r"static.accuracy holds values outside \[0, 1\]"):
        load_router(folder, expect_inputs_hash=None)
    priors = {**meta["priors"], "cost_usd": [[-1.0] * len(row) for row in meta["priors"]["cost_usd"]]}
    _write_signed(folder / "router.json", {**meta, "priors": priors})
    with pytest.raises(RoutingError, match="priors.cost_usd"):
        load_router(folder, expect_inputs_hash=None)


def test_wrong_feature_width_is_a_routing_error(router: LightGBMRouter, data: dict) -> None:
    with pytest.raises(RoutingError, match="FeatureConfig"):
        router.predict(data["Xte"][:, :100])
    bad = data["Xte"][:2].copy()
    bad[1, 5] = np.nan
    with pytest.raises(RoutingError, match="NaN"):
        router.predict(bad)


def test_corrupt_query_map_is_refused(saved: Path, tmp_path: Path) -> None:
    folder = _copy(saved, tmp_path)
    meta = json.loads((folder / "router.json").read_text())
    meta["query_map"]["coef_"] = meta["query_map"]["coef_"][:1]  # one group fewer than the priors have
    _write_signed(folder / "router.json", meta)
    with pytest.raises(RoutingError, match="query map"):
        load_router(folder, expect_inputs_hash=None)
    meta["query_map"] = json.loads((saved / "router.json").read_text())["query_map"]
    meta["priors"]["accuracy"] = meta["priors"]["accuracy"][:1]
    _write_signed(folder / "router.json", meta)
    with pytest.raises(RoutingError, match="priors"):
        load_router(folder, expect_inputs_hash=None)


# --- groups and the prior ----------------------------------------------------------------------


def test_outcome_matrix_carries_task_labels_and_the_router_uses_them_by_default(data: dict, tmp_path) -> None:
    Y = data["train"]
    assert Y.tasks == data["tasks"]["train"].tolist()  # build_outcomes keeps each query's task
    assert Y.rows(np.array([2, 0])).tasks == [Y.tasks[2], Y.tasks[0]]
    assert OutcomeMatrix.load(Y.save(tmp_path / "y.npz", workflow_hash="w")).tasks == Y.tasks
    labelled = LightGBMRouter(**FAST).fit(data["Xtr"], Y)
    assert labelled.validation_metrics_["group_source"] == "labels"
    assert sorted(labelled.query_map_.groups_) == sorted(set(Y.tasks))
    unlabelled = LightGBMRouter(**FAST).fit(data["Xtr"], _with(Y, tasks=None))
    assert unlabelled.validation_metrics_["group_source"] == "k-means"


def test_task_groups_are_learned_and_predicted_from_the_text(router: LightGBMRouter, data: dict) -> None:
    assert router.validation_metrics_["group_source"] == "labels"
    assert sorted(router.query_map_.groups_) == sorted(set(data["tasks"]["train"]))
    _, G = router.query_map_.transform(data["Xte"])
    predicted = np.asarray(router.query_map_.groups_)[G.argmax(axis=1)]
    assert (predicted == data["tasks"]["test"]).mean() > 0.9  # ARC and Winogrande prompts differ in form
    with pytest.raises(RoutingError, match="one label"):
        LightGBMRouter(**FAST).fit(data["Xtr"], data["train"], groups=data["tasks"]["train"][:10])


def test_without_labels_the_groups_are_clusters(data: dict) -> None:
    router = LightGBMRouter(n_clusters=4, **FAST).fit(data["Xtr"], _with(data["train"], tasks=None))
    assert router.validation_metrics_["group_source"] == "k-means"
    assert len(router.query_map_.groups_) == 4 and router.prior_accuracy_.shape == (
        4,
        len(data["train"].candidate_ids),
    )


def test_query_map_state_round_trips_exactly(router: LightGBMRouter, data: dict) -> None:
    state = json.loads(json.dumps(router.query_map_.state()))
    again = QueryMap.from_state(state)
    for a, b in zip(router.query_map_.transform(data["Xte"]), again.transform(data["Xte"]), strict=True):
        np.testing.assert_array_equal(a, b)


def _group_signal(n: int, k: int, seed: int) -> tuple[np.ndarray, OutcomeMatrix, np.ndarray]:
    """Queries in two groups told apart by a direction of the embedding; candidate j is right
    with probability 0.9 in group j % 2, else 0.1; no other signal."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, size=n)
    emb = rng.normal(size=(n, 384)) + 3.0 * np.outer(2 * group - 1, np.eye(384)[0])
    X = np.hstack([emb / np.linalg.norm(emb, axis=1, keepdims=True), rng.random((n, 12))]).astype(np.float32)
    p = np.where(group[:, None] == (np.arange(k) % 2)[None, :], 0.9, 0.1)
    correct = (rng.random((n, k)) < p).astype(float)
    latency = np.tile(1.0 + np.arange(k) / k, (n, 1))
    cands = [{"knobs": {}, "nodes": {"a": {"model": f"m{j}", "budget": None}}} for j in range(k)]
    Y = OutcomeMatrix(
        [f"q{i}" for i in range(n)],
        [f"t{i}" for i in range(n)],
        [f"c{j}" for j in range(k)],
        cands,
        correct,
        latency,
        latency,
        latency * 1e-3,
        "synthetic",
    )
    return X, Y, np.array(["even", "odd"])[group]


def test_group_prior_carries_the_signal_and_many_candidates_force_conditioned() -> None:
    X, Y, groups = _group_signal(600, 40, seed=0)
    X_test, Y_test, groups_test = _group_signal(200, 40, seed=1)
    router = LightGBMRouter(design="auto", max_per_candidate=32, **FAST).fit(X, Y, groups=groups)
    assert router.design_ in {"conditioned", "prior"}
    assert set(router.validation_metrics_["valid_log_loss"]) == {"conditioned", "prior"}
    acc = router.predict(X_test).accuracy
    truth = np.where((groups_test == "odd")[:, None] == (np.arange(40) % 2 == 1)[None, :], 0.9, 0.1)
    assert np.abs(acc - truth).mean() < 0.1
    pick = router.select(X_test, Preference(lambda_=0.0), Scale(1.0, 2.0, 1e-3, 2e-3)).index
    assert (Y_test.correct[np.arange(200), pick]).mean() > 0.8  # static could only reach ~0.5


@pytest.mark.slow  # starts a subprocess or a server
def test_loading_does_not_import_torch(saved: Path) -> None:
    code = (f"import sys; from router.artifact import load_router; load_router({str(saved)!r}, "
            "expect_inputs_hash=None); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stderr


def test_rewriting_a_router_never_leaves_a_reader_without_one(
    router: LightGBMRouter, data: dict, tmp_path: Path
) -> None:
    """A reload during `flowfront train` must see the old or the new router, never none."""
    import threading

    folder = tmp_path / "router-frontier"
    args = dict(
        frontier_hash=data["frontier"].content_hash(),
        workflow_hash="w",
        feature_config=FEATURES,
        metrics={"note": "test"},
    )
    save_router(router, folder, **args)
    done, failures, loads = threading.Event(), [], 0

    def rewrite() -> None:
        try:
            for i in range(12):
                save_router(router, folder, **{**args, "metrics": {"round": i}})  # a new version each time
        finally:
            done.set()

    writer = threading.Thread(target=rewrite)
    writer.start()
    while not done.is_set():
        try:
            load_router(folder, expect_inputs_hash=args["frontier_hash"])
            loads += 1
        except Exception as exc:  # noqa: BLE001 - any failure to load is what this test counts
            failures.append(repr(exc))
    writer.join()
    assert loads > 0 and failures == []
    from flowfront.router.artifact import KEEP_VERSIONS

    kept = [p for p in tmp_path.iterdir() if p.name.startswith("router-frontier.") and p.is_dir()]
    assert len(kept) <= KEEP_VERSIONS + 1  # old versions pruned beyond the ones kept for rollback


# --- the prior design and caller hints ------------------------------------------------------


@pytest.fixture(scope="module")
def prior_router(data: dict) -> LightGBMRouter:
    return LightGBMRouter(design="prior", **FAST).fit(
        data["Xtr"], data["train"], groups=data["tasks"]["train"]
    )


def test_prior_design_predicts_the_group_prior_mixture(prior_router: LightGBMRouter, data: dict) -> None:
    from flowfront.router.querymap import apply_calibration

    _, G = prior_router.query_map_.transform(data["Xte"])
    expected = apply_calibration(
        np.clip(G @ prior_router.prior_accuracy_, 1e-3, 1 - 1e-3), prior_router.calibration_
    )
    pred = prior_router.predict(data["Xte"])
    keep = ~pred.fallback
    np.testing.assert_allclose(pred.accuracy[keep], np.clip(expected, 0, 1)[keep], rtol=1e-12)
    assert prior_router.success_models_ == []


def test_prior_design_round_trips(prior_router: LightGBMRouter, data: dict, tmp_path: Path) -> None:
    folder = save_router(
        prior_router,
        tmp_path / "router",
        frontier_hash=data["frontier"].content_hash(),
        workflow_hash="w",
        feature_config=FEATURES,
        metrics={},
    )
    loaded = load_router(folder, expect_inputs_hash=data["frontier"].content_hash())
    np.testing.assert_array_equal(
        loaded.predict(data["Xte"]).accuracy, prior_router.predict(data["Xte"]).accuracy
    )
    assert not list((folder / "models").glob("success*"))


def test_a_known_hint_is_the_group_an_unknown_one_is_ignored(
    prior_router: LightGBMRouter, data: dict
) -> None:
    X = data["Xte"][:30]
    groups = prior_router.hint_groups
    assert set(groups) == set(data["tasks"]["train"].tolist())
    first, second = (prior_router.predict(X, hints=[g] * len(X)) for g in groups[:2])
    assert first.hinted.all() and first.n_hinted == len(X)
    # every query told the same task gets the same estimates (the task's prior), and tasks differ
    np.testing.assert_allclose(first.accuracy, np.broadcast_to(first.accuracy[0], first.accuracy.shape))
    assert not np.allclose(first.accuracy[0], second.accuracy[0])
    unknown = prior_router.predict(X, hints=["no-such-task"] * (len(X) - 1) + [None])
    assert not unknown.hinted.any()
    np.testing.assert_array_equal(unknown.accuracy, prior_router.predict(X).accuracy)
    assert prior_router.predict(X).hinted is None


def test_hints_reach_the_boosters_and_must_match_the_rows(
    router: LightGBMRouter, data: dict, scale: Scale
) -> None:
    X = data["Xte"][:20]
    task = router.hint_groups[0]
    hinted = router.select(X, Preference(), scale, hints=[task] * len(X))
    assert hinted.index.shape == (len(X),)
    if router.design_ != "prior":  # the group columns are booster features too
        assert not np.allclose(router.predict(X, hints=[task] * len(X)).accuracy, router.predict(X).accuracy)
    with pytest.raises(RoutingError, match="2 hints for 20 queries"):
        router.predict(X, hints=[task, task])


def test_clusters_take_no_hints(data: dict) -> None:
    Y = dataclasses.replace(data["train"], tasks=None)
    router = LightGBMRouter(design="prior", n_clusters=4, **FAST).fit(data["Xtr"], Y)
    assert router.hint_groups == ()
    assert not router.predict(data["Xte"][:5], hints=["cluster00"] * 5).hinted.any()


def test_an_ood_query_with_a_known_hint_falls_back_to_its_task(router: LightGBMRouter) -> None:
    noise = np.random.default_rng(3).standard_normal((4, router.n_features_)).astype(np.float32)
    task = router.hint_groups[0]
    pred = router.predict(noise, hints=[task] * 4)
    assert pred.fallback.all() and pred.hinted.all()
    row = router.hint_groups.index(task)
    np.testing.assert_allclose(
        pred.accuracy,
        np.broadcast_to(np.clip(router.prior_accuracy_[row], 1e-3, 1 - 1e-3), pred.accuracy.shape),
    )


def test_cross_validation_keeps_boosting_only_when_it_earns_it() -> None:
    from flowfront.router.design import SIMPLEST_FIRST
    from flowfront.router.testing import DIM, synthetic

    X, Y = synthetic(600, 1)
    small = dict(
        embedding_dim=DIM, n_estimators=60, early_stopping_rounds=10, num_threads=1, min_data_in_leaf=20
    )
    noise = np.random.default_rng(0).choice(["x", "y"], size=len(X))  # labels that say nothing
    boosted = LightGBMRouter(**small).fit(X, Y, groups=noise)
    vm = boosted.validation_metrics_
    cv, se = vm["cv_utility"], vm["cv_se_of_gap_to_best"]
    assert set(cv) == set(SIMPLEST_FIRST) and vm["cv_folds"] == 3
    assert (
        boosted.design_ != "prior" and cv[vm["cv_best"]] - cv["prior"] > se["prior"]
    )  # the signal is in the text
    # the simplest design within one standard error of the best is the one kept
    assert boosted.design_ == next(d for d in SIMPLEST_FIRST if cv[vm["cv_best"]] - cv[d] <= se[d])
    labelled = LightGBMRouter(**small).fit(
        X, Y
    )  # the labels are the planted clusters: the prior holds nearly all
    cv = labelled.validation_metrics_["cv_utility"]
    assert (
        cv["prior"] > max(cv.values()) - 0.01
        and cv["prior"] > boosted.validation_metrics_["cv_utility"]["prior"] + 0.05
    )


def test_the_prior_learns_from_every_train_query_and_one_group_is_static(data: dict) -> None:
    few = data["train"].rows(np.arange(19))
    Y = dataclasses.replace(
        few, tasks=None
    )  # 19 unlabelled queries: one k-means group (10 queries a group at least)
    router = LightGBMRouter(design="prior", ood_fallback=False, **FAST).fit(data["Xtr"][:19], Y)
    assert router.query_map_.groups_ == ["cluster00"] and router.calibration_ == {"method": "identity"}
    pred = router.predict(data["Xte"][:10])
    np.testing.assert_allclose(
        pred.accuracy, np.broadcast_to(np.clip(Y.correct.mean(0), 1e-3, 1 - 1e-3), pred.accuracy.shape)
    )
    np.testing.assert_allclose(pred.latency_s[0], Y.latency_parallel_s.mean(0))


def test_too_few_queries_to_cross_validate_keep_the_prior(data: dict) -> None:
    router = LightGBMRouter(**FAST).fit(data["Xtr"][:30], data["train"].rows(np.arange(30)))
    assert router.design_ == "prior" and "too few to cross-validate" in router.validation_metrics_["rule"]
