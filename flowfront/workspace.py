"""Where every artifact lives under the workdir: one place that knows the layout.

``Workspace(workdir).benchmark(name).frontier()`` instead of joining paths by hand, so the name
of a router's folder (``router-<strategy>``) or of an outcome cache is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_FRONTIER = "frontier"
SERVED_STRATEGY = "frontier"  # the router `serve` loads: the one trained over the compiled frontier


@dataclass(frozen=True)
class BenchmarkDir:
    """One benchmark's artifacts: profiles, frontiers, validation, routers, outcome caches, eval."""

    root: Path

    @property
    def profiles(self) -> Path:
        return self.root / "profiles.json"

    def frontier(self, name: str = DEFAULT_FRONTIER) -> Path:
        return self.root / f"{name}.json"

    @property
    def validation(self) -> Path:
        return self.root / "validation.json"

    def router(self, strategy: str = SERVED_STRATEGY) -> Path:
        return self.root / f"router-{strategy}"

    def outcomes(self, digest: str, split: str) -> Path:
        return self.root / "outcomes" / f"{digest}-{split}.npz"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"


@dataclass(frozen=True)
class Workspace:
    """The workdir: the trace store, shared caches, the run's report, one folder per benchmark."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "traces.sqlite"

    @property
    def serve_store(self) -> Path:
        return self.root / "serve" / "traces.sqlite"

    @property
    def own(self) -> Path:
        """Your own benchmarks and workflows (``benchmarks/``, ``workflows/``), e.g. an outcome table
        run with ``--name``: found by name like the built-in ones."""
        return self.root / "own"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def timings(self) -> Path:
        return self.root / "timings.json"

    def benchmark(self, name: str) -> BenchmarkDir:
        return BenchmarkDir(self.root / name)
