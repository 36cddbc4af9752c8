"""flowfront: compile a structured LLM workflow into a small frontier, route each query over it, serve it.

The Python API (a notebook session, end to end on the built-in data; docs/python-api.md):

>>> import flowfront as ff
>>> settings = ff.Settings(workdir="runs")                      # doctest: +SKIP
>>> bench = ff.load_benchmark("qa-cascade", settings)           # doctest: +SKIP
>>> profiles = ff.profile(bench, settings)                      # doctest: +SKIP
>>> frontier = ff.compile_frontier(bench, profiles)             # doctest: +SKIP
>>> frontier_path = ff.save_frontier(frontier, settings)        # doctest: +SKIP
>>> ff.select(frontier, ff.Preference(max_latency_s=0.5, on_infeasible="nearest")).id  # doctest: +SKIP
>>> router = ff.train_router(bench, settings)                   # doctest: +SKIP
>>> router.route(["Which gas do plants absorb? A) O2 B) CO2"], ff.Preference(lambda_=0.2))  # doctest: +SKIP
>>> ff.load_router("qa-cascade", settings)                      # doctest: +SKIP

Each call returns objects (artifacts, candidates), not paths. Importing flowfront does no work:
the stages load on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowfront.errors import (
    BackendError,
    CompileError,
    FlowfrontError,
    RoutingError,
    SpecError,
    first_invalid,
)
from flowfront.settings import Settings

if TYPE_CHECKING:
    from flowfront.benchmarks import Benchmark
    from flowfront.compile.artifact import Candidate, Frontier, Profiles
    from flowfront.router.select import Preference
    from flowfront.spec import Workflow

__all__ = [
    "BackendError",
    "CompileError",
    "FlowfrontError",
    "Preference",
    "RoutingError",
    "Settings",
    "SpecError",
    "TrainedRouter",
    "compile_frontier",
    "evaluate",
    "feedback",
    "load_benchmark",
    "load_frontier",
    "load_router",
    "load_workflow",
    "profile",
    "run_outcomes",
    "save_frontier",
    "select",
    "train_router",
]


def __getattr__(name: str) -> Any:
    if name == "Preference":  # the one stage type re-exported by name, imported on first use
        global _preference
        if _preference is None:
            _preference = _checked_preference()
        return _preference
    raise AttributeError(f"module 'flowfront' has no attribute {name!r}")


_preference: Any = None


def _checked_preference() -> type:
    """``router.select.Preference`` whose constructor raises the documented SpecError for a bad
    value. Only the facade's: a custom ``__init__`` is also what pydantic validates nested fields
    with, and the service must keep answering a bad preference in a request with a 422."""
    from pydantic import ValidationError

    from flowfront.router.select import Preference as Base

    class Preference(Base):
        __doc__ = Base.__doc__

        def __init__(self, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                field, why = first_invalid(exc, "preference")
                raise SpecError(
                    f"Preference `{field}`: {why} (got {exc.errors()[0].get('input')!r})",
                    hint="lambda_ >= 0; max_latency_s, max_cost_usd > 0; min_accuracy in [0, 1]",
                ) from None

    Preference.__module__ = __name__
    return Preference


def _settings(settings: Settings | None) -> Settings:
    return settings if settings is not None else Settings()


def load_workflow(name_or_path: str | Path, settings: Settings | None = None) -> Workflow:
    """A validated workflow: a built-in name (``configs/workflows/<name>.yaml``) or a YAML path."""
    from flowfront.benchmarks import load_workflow_arg

    s = _settings(settings)
    return load_workflow_arg(str(name_or_path), s.configs_dir, own_dir=s.workspace.own)


def load_benchmark(name_or_path: str | Path, settings: Settings | None = None) -> Benchmark:
    """A benchmark: its workflow, data and grading rule."""
    from flowfront.benchmarks import load_benchmark as load

    s = _settings(settings)
    return load(str(name_or_path), s.configs_dir, own_dir=s.workspace.own)


def profile(benchmark: Benchmark | str, settings: Settings | None = None, **options: Any) -> Profiles:
    """Profile every (model, budget) of every node (``compile.jobs.profile_job`` options); returns
    the profiles."""
    from flowfront.compile.artifact import Profiles
    from flowfront.compile.jobs import profile_job

    path = profile_job(_settings(settings), benchmark, progress=False, **options)
    return Profiles.load(path)


def compile_frontier(benchmark: Benchmark | str, profiles: Profiles, settings: Settings | None = None,
                     **options: Any) -> Frontier:
    """A new frontier from the profiles (the inputs are left unchanged; nothing is written).

    Not ``ff.compile``: the compile stage is the subpackage ``flowfront.compile``, and importing a
    subpackage rebinds that attribute of ``flowfront`` to the module.

    Options are :func:`compile.jobs.compile_frontier`'s; by default the frontier is widened for
    routing exactly as ``flowfront run`` and ``flowfront compile`` do.
    """
    from flowfront.compile import jobs

    bench = load_benchmark(benchmark, settings) if isinstance(benchmark, str) else benchmark
    frontier, _ = jobs.compile_frontier(bench, profiles, **options)
    return frontier


def save_frontier(frontier: Frontier, settings: Settings | None = None, name: str = "frontier") -> Path:
    """Write a frontier where `train`, `eval` and `serve` look for it (atomic)."""

    return frontier.save(_settings(settings).workspace.benchmark(frontier.benchmark).frontier(name))


def load_frontier(benchmark_or_path: str | Path, settings: Settings | None = None) -> Frontier:
    """A saved frontier: a ``frontier.json`` path, or a benchmark's name (its saved frontier in the
    workdir)."""
    from flowfront.compile.artifact import Frontier

    path = Path(benchmark_or_path)
    if path.suffix != ".json":
        path = _settings(settings).workspace.benchmark(str(benchmark_or_path)).frontier()
    return Frontier.load(path)


def load_router(benchmark_or_folder: str | Path, settings: Settings | None = None, *,
                frontier: Frontier | None = None) -> TrainedRouter:
    """A saved router: a router folder, or a benchmark's name (its served router in the workdir),
    checked against its frontier (by default the ``frontier.json`` beside the folder)."""
    folder = Path(benchmark_or_folder)
    if not folder.is_dir():
        folder = _settings(settings).workspace.benchmark(str(benchmark_or_folder)).router()
    return TrainedRouter.load(folder, frontier)


def run_outcomes(path: str | Path, name: str, settings: Settings | None = None, *, seeds: int = 3,
                 strategies: Sequence[str] | None = None) -> dict:
    """The whole chain (import, profile, compile, validate, train, eval, report) on an outcome
    table, as ``flowfront run --outcomes PATH --name NAME`` does; returns its summary row
    (``results`` holds the evaluation). ``name`` is then served, listed and routable.
    ``strategies`` evaluates only those (static, best-single and the oracle always run)."""
    import re

    from flowfront.cli.pipeline import run_main
    from flowfront.router.registry import strategy_entry

    chosen = None if strategies is None else tuple(strategies)
    for strategy in chosen or ():
        strategy_entry(strategy)  # an unknown name fails before any work, naming the known ones

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        raise SpecError(f"name {name!r} is not a usable name",
                        hint="use lower-case letters, digits, - and _ (it becomes a file and URL name)")
    return run_main(_settings(settings), (), outcomes=Path(path), seeds=seeds, name=name,
                    strategies=chosen)[0]


def select(frontier: Frontier, preference: Preference | None = None) -> Candidate:
    """The candidate static selection picks for a preference (what the service picks without a router)."""
    from flowfront.router.select import Preference, select_static

    index, _, _ = select_static(frontier, preference or Preference())
    return frontier.candidates[index]


class TrainedRouter:
    """A trained router over a frontier, loaded for use: per-query predictions and picks (the
    learned model itself, a ``flowfront.router.base.Router``, is ``.learned``).

    >>> # router = ff.TrainedRouter.load("runs/qa-cascade/router-frontier")
    >>> # router.route(["2 + 2 = ?"], ff.Preference(lambda_=0.3))[0].id
    >>> # router.route(["2 + 2 = ?"], tasks=["gsm8k"])  # a task it was trained on is used as the group

    ``tasks`` (one per query, None for unknown) are caller hints: a task seen in training is used
    as the query's group instead of the one predicted from the text; ``known_tasks`` lists them.
    """

    def __init__(self, learned: Any, feature_config: Any, frontier: Frontier,
                 progressive: Any = None) -> None:
        self.learned = learned
        self.feature_config = feature_config
        self.frontier = frontier
        # The checkpoint routers trained with it (``router.progressive.ProgressivePolicy``), or None.
        self.progressive = progressive
        self._embedder: Any = None

    @classmethod
    def load(cls, folder: str | Path, frontier: Frontier | None = None) -> TrainedRouter:
        """Load a router artifact, checked against the frontier it was trained for (by default the
        ``frontier.json`` beside the folder)."""
        from flowfront.compile.artifact import Frontier
        from flowfront.router.artifact import load_progressive, load_router, read_artifact

        folder = Path(folder)
        if frontier is None:
            frontier = Frontier.load(folder.parent / "frontier.json")
        learned = load_router(folder, expect_inputs_hash=frontier.content_hash())
        return cls(learned, read_artifact(folder).feature_config, frontier, load_progressive(folder, learned))

    def features(self, queries: Sequence[str] | str) -> Any:
        from flowfront.router.features import Embedder, featurize

        if isinstance(queries, str):  # one query, not its characters
            queries = [queries]
        if self._embedder is None:
            self._embedder = Embedder(self.feature_config)
        return featurize(list(queries), self.feature_config, self._embedder)

    @property
    def known_tasks(self) -> tuple[str, ...]:
        """The task hints the router can use (the labels it was trained on)."""
        return tuple(self.learned.hint_groups)

    def predict(self, queries: Sequence[str] | str, tasks: Sequence[str | None] | None = None) -> Any:
        """Per query and candidate: predicted accuracy, latency (s) and cost (USD), each (Q, K);
        ``.hinted`` marks the queries whose task hint was used."""
        return self.learned.predict(self.features(queries), hints=tasks)

    def route(self, queries: Sequence[str] | str, preference: Preference | None = None,
              tasks: Sequence[str | None] | None = None) -> list[Candidate]:
        """The candidate each query should use under ``preference`` (the router contract's
        ``select``); one string is one query (one pick)."""
        from flowfront.router.select import Preference, Scale, frontier_estimates

        _, lat, cost = frontier_estimates(self.frontier)
        picked = self.learned.select(
            self.features(queries), preference or Preference(), Scale.from_estimates(lat, cost), hints=tasks
        )
        return [self.frontier.candidates[int(i)] for i in picked.index]


def train_router(benchmark: Benchmark | str, settings: Settings | None = None, *, strategy: str = "frontier",
                 seed: int = 0) -> TrainedRouter:
    """Fit the LightGBM router on the train split over the saved frontier; returns it loaded."""
    from flowfront.compile.artifact import Frontier
    from flowfront.router.train import train_job

    settings = _settings(settings)
    bench = load_benchmark(benchmark, settings) if isinstance(benchmark, str) else benchmark
    path, _ = train_job(settings, bench, strategy, seed=seed)
    if path is None:
        raise RoutingError(f"strategy {strategy!r} learns nothing to save", hint="use strategy='frontier'")
    frontier = Frontier.load(settings.workspace.benchmark(bench.name).frontier())
    return TrainedRouter.load(path, frontier)


def evaluate(benchmark: Benchmark | str, settings: Settings | None = None, **options: Any) -> dict:
    """Every strategy on the held-out split (``eval.jobs.eval_job`` options); returns the results dict."""
    from flowfront.eval.jobs import eval_job

    _, results = eval_job(_settings(settings), benchmark, **options)
    return results


def feedback(response_id: str, name: str = "correct", *, value: float | None = None, label: str | None = None,
             comment: str | None = None, settings: Settings | None = None) -> None:
    """Grade a served response, as ``POST /v1/feedback`` does (one grade per response and name;
    ``correct`` and ``judge`` are what ``flowfront retrain`` learns from). Raises a DataError when
    the response was never served (or has been pruned).

    >>> ff.feedback("0f3a...", "correct", value=1.0)  # doctest: +SKIP
    """
    from pydantic import ValidationError

    from flowfront.errors import DataError
    from flowfront.grades import FeedbackIn
    from flowfront.store import connect

    try:
        row = FeedbackIn(id=response_id, name=name, value=value, label=label, comment=comment).row("python")
    except ValidationError as exc:
        field, why = first_invalid(exc, "grade")
        raise SpecError(
            f"feedback `{field}`: {why}",
            hint="value in [0, 1] or a label",
        ) from None
    with connect(_settings(settings).served_store_url) as store:
        if store.put_feedback([row]):
            raise DataError(f"no served response {response_id!r} in {store.url.shown}",
                            hint="pass the id of a response the service gave (run: trace_id, chat: id)")
