"""Does a query x candidate factorisation of the outcome matrix route better? Train splits only.

    .venv/bin/python research/factorisation_trial.py [--workdir runs] [--benchmarks qa-cascade model-route]

The factorisation is EmbedLLM's / RouteLLM's matrix-factorisation idea on our features: a query's
text features map linearly to a rank-r vector u = W x, each candidate has a vector v_k and a bias,
and P(candidate k is right) = sigmoid(u . v_k + b_k), fitted by binary cross-entropy (Adam, weight
decay) so a query borrows strength from similar queries' outcomes across every candidate at once.
The rank, weight decay and epoch count (early stopping) are chosen on an inner 80/20 split of
each fit fold.

Compared with the shipped frontier router on 3 seeded 80/20 folds of the train split (the folds
of research/embedding_choice.py), paired per query: "mf" keeps the frontier router's latency and
cost estimates and replaces its accuracy with the factorisation's; "blend" averages the two
accuracies. The test split is not read. docs/router.md records the result.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GRID = [(4, 1e-2), (4, 1e-1), (16, 1e-2), (16, 1e-1)]  # (rank, AdamW weight decay)
MAX_EPOCHS = 400
# At 1e-2 the held-out loss bottomed out by epoch 10-30 (the fit barely left the candidates'
# train rates); 1e-3 lets early stopping see the curve.
LEARNING_RATE = 1e-3


def fit_factorisation(X: np.ndarray, correct: np.ndarray, rank: int, decay: float, seed: int,
                      epochs: int = MAX_EPOCHS, held: tuple[np.ndarray, np.ndarray] | None = None):
    """A function X -> (Q, K) success probabilities, and with ``held`` (X, correct) also the
    held-out log loss after every 10 epochs (for early stopping)."""
    import torch

    torch.manual_seed(seed)
    # Text stats (lengths, counts) sit on other scales than the embedding: standardise on the fit rows.
    centre, spread = X.mean(0), X.std(0) + 1e-6
    x = torch.as_tensor((X - centre) / spread, dtype=torch.float32)
    y = torch.as_tensor(correct, dtype=torch.float32)
    mean = y.mean(0).clamp(1e-3, 1 - 1e-3)
    W = torch.nn.Parameter(torch.randn(x.shape[1], rank) * 0.01)
    V = torch.nn.Parameter(torch.randn(y.shape[1], rank) * 0.01)
    b = torch.nn.Parameter(torch.log(mean / (1 - mean)))  # start at each candidate's train rate
    opt = torch.optim.AdamW([W, V, b], lr=LEARNING_RATE, weight_decay=decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    curve = []
    if held is not None:
        hx = torch.as_tensor((held[0] - centre) / spread, dtype=torch.float32)
        hy = torch.as_tensor(held[1], dtype=torch.float32)
    for epoch in range(1, epochs + 1):
        opt.zero_grad()
        loss = loss_fn((x @ W) @ V.T + b, y)
        loss.backward()
        opt.step()
        if held is not None and epoch % 10 == 0:
            with torch.no_grad():
                curve.append((float(loss_fn((hx @ W) @ V.T + b, hy)), epoch))

    def predict(Xq: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            q = torch.as_tensor((Xq - centre) / spread, dtype=torch.float32)
            return torch.sigmoid((q @ W) @ V.T + b).numpy()
    return predict, curve


def choose(X: np.ndarray, correct: np.ndarray, seed: int):
    """The grid point with the lowest inner-validation log loss, refitted on all of X."""
    order = np.random.default_rng(seed + 100).permutation(len(X))
    cut = int(0.8 * len(X))
    fit, held = order[:cut], order[cut:]
    best = min((min(fit_factorisation(X[fit], correct[fit], rank, decay, seed,
                                      held=(X[held], correct[held]))[1]), rank, decay)
               for rank, decay in GRID)
    (loss, epochs), rank, decay = best
    predict, _ = fit_factorisation(X, correct, rank, decay, seed, epochs=epochs)
    return predict, {"rank": rank, "weight_decay": decay, "epochs": epochs, "inner_log_loss": round(loss, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(ROOT / "runs"))
    parser.add_argument("--benchmarks", nargs="+", default=["qa-cascade", "model-route"])
    args = parser.parse_args()

    from flowfront.router.base import Predictions, Router, expected_utility
    from flowfront.router.train import load_data, make_router
    from flowfront.settings import Settings, prepare_environment

    class Swapped(Router):
        """The frontier router with its accuracy estimates replaced (or blended) by another model's."""

        def __init__(self, base, accuracy, weight: float) -> None:
            self.base, self.accuracy, self.weight = base, accuracy, weight
            self.execution = base.execution

        def fit(self, X, Y):  # fitted by the caller
            return self

        def predict(self, X, *, hints=None) -> Predictions:
            pred = self.base.predict(X, hints=hints)
            acc = self.weight * self.accuracy(X) + (1 - self.weight) * pred.accuracy
            return Predictions(acc, pred.latency_s, pred.cost_usd, fallback=pred.fallback, hinted=pred.hinted)

    prepare_environment()
    settings = Settings(workdir=Path(args.workdir))
    for bench in args.benchmarks:
        data = load_data(settings, bench, "frontier", include_test=False)
        X, ex = data.X_train, data.frontier.execution
        per_query: dict[str, list[np.ndarray]] = {"frontier": [], "mf": [], "blend": []}
        chosen = []
        for seed in (0, 1, 2):
            order = np.random.default_rng(seed).permutation(len(X))
            fit, held = np.sort(order[: int(0.8 * len(X))]), np.sort(order[int(0.8 * len(X)):])
            Y_fit, Y_held = data.train.rows(fit), data.train.rows(held)
            router = make_router("frontier", seed=seed, execution=ex).fit(X[fit], Y_fit)
            accuracy, picked = choose(X[fit], Y_fit.correct, seed)
            chosen.append(picked)
            for name, policy in (("frontier", router), ("mf", Swapped(router, accuracy, 1.0)),
                                 ("blend", Swapped(router, accuracy, 0.5))):
                per_query[name].append(np.asarray(expected_utility(policy, X[held], Y_held, data.scale,
                                                                   data.lambdas, ex)))
        eu = {name: np.concatenate(parts) for name, parts in per_query.items()}
        row: dict[str, object] = {"benchmark": bench, "train_queries": len(X), "chosen": chosen}
        row.update({name: round(float(v.mean()), 4) for name, v in eu.items()})
        for name in ("mf", "blend"):
            gap = eu[name] - eu["frontier"]
            row[f"{name}_minus_frontier"] = {"mean": round(float(gap.mean()), 4),
                                             "se": round(float(gap.std(ddof=1) / np.sqrt(len(gap))), 4)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
