"""The one registry of routing strategies: training, evaluation, the contract tests and the
reports read it (``STRATEGIES``); a new strategy is one entry here.

Each entry says how to build the policy and what it is: which candidates it chooses among,
whether seeds change its fit, whether ``flowfront train`` saves it, whether it reads the query
features and honours a preference, and whether, like the oracle, it is by definition fitted on
the outcomes it is judged on. ``test_params`` shrink it for the contract tests' synthetic data
(``flowfront.router.testing``). The classes are imported when a strategy is built, not when
this table is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal

from flowfront.errors import RoutingError
from flowfront.router.base import Policy
from flowfront.spec import Execution

__all__ = ["STRATEGIES", "TEST_EMBEDDING_DIM", "StrategyEntry", "strategy_entry"]

TEST_EMBEDDING_DIM = 24  # the contract tests' narrow embedding (fits stay fast)


@dataclass(frozen=True)
class StrategyEntry:
    """One routing strategy (module docstring)."""

    name: str
    module: str
    cls: str
    candidates: Literal["frontier", "sample", "all"]
    seeded: bool
    persisted: bool = False
    params: tuple[tuple[str, Any], ...] = ()
    reads_features: bool = True
    honours_preferences: bool = True
    fits_on_eval: bool = False
    reads_checkpoints: bool = False  # re-decides at checkpoints: fitted and judged on trajectories too
    test_params: tuple[tuple[str, Any], ...] = ()

    def factory(self, seed: int = 0, execution: Execution = "parallel", *, for_tests: bool = False) -> Policy:
        kwargs: dict[str, Any] = {"execution": execution, **dict(self.params)}
        if for_tests:
            kwargs |= dict(self.test_params)
        if self.seeded:
            kwargs["seed"] = seed
        policy: Policy = getattr(import_module(self.module), self.cls)(**kwargs)
        return policy


_R = "flowfront.router"
_NARROW = (("embedding_dim", TEST_EMBEDDING_DIM),)
_SMALL_BOOST = (("n_estimators", 40), *_NARROW)
_SHORT_RL = (("steps", 300), *_NARROW)

STRATEGIES: dict[str, StrategyEntry] = {
    e.name: e
    for e in (
        StrategyEntry(
            "frontier",
            f"{_R}.model",
            "LightGBMRouter",
            "frontier",
            seeded=True,
            persisted=True,
            test_params=_SMALL_BOOST,
        ),
        StrategyEntry(
            "frontier-prior",
            f"{_R}.model",
            "LightGBMRouter",
            "frontier",
            seeded=True,
            params=(("design", "prior"),),
            test_params=_SMALL_BOOST,
        ),
        StrategyEntry(
            "frontier-progressive",
            f"{_R}.progressive",
            "ProgressivePolicy",
            "frontier",
            seeded=True,
            reads_checkpoints=True,
            test_params=(("upfront_params", dict(_SMALL_BOOST)),),
        ),
        StrategyEntry(
            "static", f"{_R}.baselines", "StaticRouter", "frontier", seeded=False, reads_features=False
        ),
        StrategyEntry("knn", f"{_R}.baselines", "KNNRouter", "frontier", seeded=True, test_params=_NARROW),
        StrategyEntry(
            "cluster", f"{_R}.cluster", "ClusterRouter", "frontier", seeded=True, test_params=_NARROW
        ),
        StrategyEntry(
            "random", f"{_R}.baselines", "RandomPolicy", "frontier", seeded=True, reads_features=False
        ),
        StrategyEntry(
            "best-single",
            f"{_R}.baselines",
            "BestSinglePolicy",
            "frontier",
            seeded=False,
            reads_features=False,
            honours_preferences=False,
        ),
        StrategyEntry(
            "full-space",
            f"{_R}.model",
            "LightGBMRouter",
            "sample",
            seeded=True,
            persisted=True,
            test_params=_SMALL_BOOST,
        ),
        StrategyEntry("full-space-factorised", f"{_R}.baselines", "FactorisedPolicy", "sample", seeded=False),
        StrategyEntry(
            "masrouter-style",
            f"{_R}.baselines_rl",
            "MasRouterStyle",
            "sample",
            seeded=True,
            test_params=_SHORT_RL,
        ),
        StrategyEntry(
            "maas-style", f"{_R}.baselines_rl", "MaasStyle", "sample", seeded=True, test_params=_SHORT_RL
        ),
        # Evaluation's upper bound, not a router to train: fitted on the test outcomes themselves.
        StrategyEntry("oracle", f"{_R}.baselines", "OraclePolicy", "all", seeded=False, fits_on_eval=True),
    )
}

TRAINABLE = tuple(name for name, e in STRATEGIES.items() if not e.fits_on_eval)


def strategy_entry(strategy: str) -> StrategyEntry:
    if strategy not in STRATEGIES:
        raise RoutingError(f"unknown strategy {strategy!r}", hint=f"choose one of {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy]
