"""The router contract tests (shipped as ``flowfront.router.testing``, Optuna's ``optuna/testing``
is the model) run here over every strategy; a new strategy is one entry of
flowfront.router.registry.STRATEGIES."""

from flowfront.router.testing import *  # noqa: F403  (pytest collects the imported test functions)
