"""Which embedding variant routes better, judged on the train splits only.

    .venv/bin/python research/embedding_choice.py [--workdir runs] [--variants onnx-int8 static]

For qa-cascade and model-route (compiled and trained in the workdir, e.g. by `make run`): the
same frontier router fitted on 3 seeded 80/20 folds of the train split with each variant's
features, expected utility over the lambda sweep on each held-out fold, and the per-query
difference against the first variant, paired over folds. The test split is not read. This is
the evidence behind FeatureConfig's default variant (docs/router.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(ROOT / "runs"))
    parser.add_argument("--variants", nargs="+", default=["onnx-int8", "static"])
    parser.add_argument("--benchmarks", nargs="+", default=["qa-cascade", "model-route"])
    args = parser.parse_args()

    from flowfront.router.features import Embedder, FeatureConfig, featurize
    from flowfront.router.train import expected_utility, load_data, make_router
    from flowfront.settings import Settings, prepare_environment

    prepare_environment()
    settings = Settings(workdir=Path(args.workdir))
    for bench in args.benchmarks:
        data = load_data(settings, bench, "frontier", include_test=False)
        row: dict[str, object] = {"benchmark": bench, "train_queries": len(data.train.query_ids)}
        per_query: dict[str, np.ndarray] = {}
        for variant in args.variants:
            config = FeatureConfig(variant=variant)
            embedder = Embedder(config, settings.workspace.embeddings)
            started = time.perf_counter()
            X = featurize(data.train.texts, config, embedder)
            row[f"{variant}_featurize_s"] = round(time.perf_counter() - started, 2)
            folds = []
            for seed in (0, 1, 2):
                order = np.random.default_rng(seed).permutation(len(X))
                fit, held = np.sort(order[: int(0.8 * len(X))]), np.sort(order[int(0.8 * len(X)):])
                router = make_router("frontier", seed=seed, execution=data.frontier.execution)
                router.fit(X[fit], data.train.rows(fit))
                folds.append(np.asarray(expected_utility(router, X[held], data.train.rows(held), data.scale,
                                                         data.lambdas, data.frontier.execution)))
            per_query[variant] = np.concatenate(folds)
            row[variant] = round(float(per_query[variant].mean()), 4)
        base = args.variants[0]
        for variant in args.variants[1:]:
            gap = per_query[variant] - per_query[base]
            row[f"{variant}_minus_{base}"] = {"mean": round(float(gap.mean()), 4),
                                              "se": round(float(gap.std(ddof=1) / np.sqrt(len(gap))), 4)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
