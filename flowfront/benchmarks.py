"""Built-in benchmarks: a workflow, a dataset and its splits, and how answers are graded.

``configs/benchmarks/<name>.yaml`` names the workflow (``configs/workflows/<workflow>.yaml``), the
data source, the tasks kept and the match rule. A split keeps only the queries that every model
in the workflow's space has an outcome for, so every configuration is replayable on it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowfront.errors import DataError, SpecError
from flowfront.executor import Query, RunResult
from flowfront.parsers import extract_choice, extract_number, normalize_text
from flowfront.space import Configuration
from flowfront.spec import LLMNode, Workflow, load_workflow, parse_model, read_yaml
from flowfront.store import TraceStore

Match = Literal["choice", "number", "exact", "recorded", "tests"]


class DataSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    source: str  # routerbench | llmrouter | outcomes | questions | humaneval
    tasks: list[str] | None = None
    files: list[str] | None = None  # for `questions`: which jsonl files


class BenchmarkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    description: str = ""
    workflow: str
    data: DataSpec
    match: Match = "recorded"
    backend: Literal["replay", "litellm"] = "replay"
    # A recording of live calls (flowfront record), relative to the configs folder: replay reads
    # its queries and traces; a live run (--backend litellm) reads `data` instead.
    recording: str | None = None
    default_config: dict[str, Any] = Field(default_factory=dict)
    split_seed: int = 0


@dataclass(frozen=True)
class Benchmark:
    spec: BenchmarkSpec
    workflow: Workflow
    path: Path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def default_config(self) -> Configuration:
        return Configuration.parse(self.spec.default_config, f"{self.path}: default_config")

    def with_models(self, models: list[str]) -> Benchmark:
        """The same benchmark over another model pool (an imported outcome table's models).

        Every ``llm`` node's model choices become ``models``; the default configuration uses the
        first. A new workflow (and content hash) results; this benchmark is left unchanged.
        """
        if not models:
            raise DataError("the outcome table has no models")
        nodes = {
            name: node.model_copy(update={"models": list(models)}) if isinstance(node, LLMNode) else node
            for name, node in self.workflow.nodes.items()
        }
        workflow = Workflow.model_validate({**self.workflow.model_dump(by_alias=True), "nodes": nodes})
        default = {"nodes": {n: {"model": models[0]} for n in workflow.llm_nodes()}, "knobs": {}}
        spec = self.spec.model_copy(update={"default_config": default})
        return Benchmark(spec=spec, workflow=workflow, path=self.path)


def outcomes_benchmark(base: Benchmark, table: Path, models: list[str], data_hash: str,
                       name: str | None = None) -> Benchmark:
    """``base`` (a one-call workflow such as model-route) over an imported outcome table's models.

    Unnamed, the benchmark is named after the table's content, so its artifacts get their own
    folder and a changed table never reuses a stale frontier; named, the workflow takes the name
    too, so it can be served, listed and asked for by it.
    """
    bench = base.with_models(models)
    workflow = bench.workflow if name is None else bench.workflow.model_copy(update={"name": name})
    spec = bench.spec.model_copy(update={
        "name": name or f"outcomes-{data_hash[:12]}", "workflow": workflow.name,
        "description": f"{table.name} through the {base.workflow.name} workflow",
        "data": DataSpec(source="outcomes", files=[str(table.resolve())]),
        "match": "recorded", "backend": "replay",
    })
    return Benchmark(spec=spec, workflow=workflow, path=bench.path)


def list_benchmarks(configs_dir: Path, own_dir: Path | None = None) -> list[str]:
    folders = [configs_dir] + ([own_dir] if own_dir is not None else [])
    return sorted({p.stem for folder in folders for p in (folder / "benchmarks").glob("*.yaml")})


def load_benchmark(
    name_or_path: str | Benchmark, configs_dir: Path, *, own_dir: Path | None = None
) -> Benchmark:
    """A benchmark by name (built-in, or one of yours in ``own_dir/benchmarks``) or by path to its
    YAML (a loaded one is returned as is). Its workflow is read from the ``workflows`` folder beside
    the benchmark's own folder when that holds it, else from the built-in ones."""
    if isinstance(name_or_path, Benchmark):
        return name_or_path
    path = Path(name_or_path)
    if not path.suffix:
        folders = [configs_dir] + ([own_dir] if own_dir is not None else [])
        found = [
            f / "benchmarks" / f"{name_or_path}.yaml"
            for f in folders
            if (f / "benchmarks" / f"{name_or_path}.yaml").is_file()
        ]
        if not found:
            raise SpecError(
                f"unknown benchmark {name_or_path!r}",
                hint=f"benchmarks: {', '.join(list_benchmarks(configs_dir, own_dir))} (an outcome table "
                     "becomes "
                "one with `flowfront run --outcomes FILE --name NAME`)",
            )
        path = found[0]
    spec = parse_model(BenchmarkSpec, read_yaml(path), str(path))
    beside = path.parent.parent / "workflows" / f"{spec.workflow}.yaml"
    wf_path = beside if beside.is_file() else configs_dir / "workflows" / f"{spec.workflow}.yaml"
    return Benchmark(spec=spec, workflow=load_workflow(wf_path), path=path)


def save_benchmark(bench: Benchmark, own_dir: Path) -> Benchmark:
    """Write a benchmark and its workflow as YAML under ``own_dir`` (``benchmarks/``, ``workflows/``),
    so every command finds it by name; returns it as loaded back."""
    import yaml

    from flowfront.artifacts import write_atomic

    write_atomic(own_dir / "workflows" / f"{bench.workflow.name}.yaml",
                 yaml.safe_dump(bench.workflow.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                                sort_keys=False).encode())
    write_atomic(
        own_dir / "benchmarks" / f"{bench.name}.yaml",
        yaml.safe_dump(bench.spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False).encode(),
    )
    saved = load_benchmark(bench.name, own_dir.parent / "-", own_dir=own_dir)
    if saved.workflow.content_hash != bench.workflow.content_hash:
        raise SpecError(
            f"benchmark {bench.name!r} did not survive being written as YAML", hint="report this as a bug"
        )
    return saved


def load_workflow_arg(name_or_path: str, configs_dir: Path, *, own_dir: Path | None = None) -> Workflow:
    """A workflow by path, by workflow name, or through a benchmark's name."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"}:
        return load_workflow(path)
    for folder in [configs_dir] + ([own_dir] if own_dir is not None else []):
        candidate = folder / "workflows" / f"{name_or_path}.yaml"
        if candidate.is_file():
            return load_workflow(candidate)
    return load_benchmark(name_or_path, configs_dir, own_dir=own_dir).workflow


def split_of(query_id: str, recorded: str | None, seed: int) -> str:
    """The recorded split, or a seeded, stable 70/30 train/test split when the data has none."""
    if recorded:
        return recorded
    digest = hashlib.sha256(f"{seed}:{query_id}".encode()).digest()
    return "train" if int.from_bytes(digest[:4], "big") % 100 < 70 else "test"


def load_queries(
    bench: Benchmark, store: TraceStore, source: str, split: str | None, *, require_outcomes: bool = True
) -> list[Query]:
    """Queries of a split; on replay, only those every model of the workflow has an outcome for."""
    rows = store.queries(source)
    if not rows:
        raise DataError(
            f"no queries imported for source {source!r}", hint="run `flowfront data import` first"
        )
    models = set(bench.workflow.all_models())
    have = store.models_per_query(source) if require_outcomes else {}
    tasks = set(bench.spec.data.tasks) if bench.spec.data.tasks else None
    out = []
    for qid, text, task, rec_split, ref in rows:
        if tasks is not None and task not in tasks:
            continue
        this_split = split_of(qid, rec_split, bench.spec.split_seed)
        if split is not None and this_split != split:
            continue
        if require_outcomes and not models <= have.get(qid, set()):
            continue
        out.append(Query(qid, text, task, this_split, ref))
    if not out:
        raise DataError(
            f"benchmark {bench.name!r} has no queries in split {split!r} with outcomes for all of "
            f"{sorted(models)}",
            hint="check the split name (train/test) and that the data holds these models",
        )
    return out


def grade(result: RunResult, query: Query, match: Match) -> float:
    """A run's score in [0, 1].

    The recorded grade of the call the final answer came from wins when there is one (replayed
    data); otherwise the answer is compared with the reference by the benchmark's match rule.
    """
    if result.error is not None or result.value is None:
        return 0.0
    if result.value.score is not None:
        return float(result.value.score)
    if match == "recorded" or query.reference is None or result.answer is None:
        return 0.0
    if match == "tests":
        from flowfront.sandbox import reference_tests, run_tests

        tests = reference_tests(query.reference)
        return float(tests is not None and run_tests(str(result.answer), *tests).passed)
    answer, ref = str(result.answer), str(query.reference)
    if match == "choice":
        return float(answer == (extract_choice(ref) or ref))
    if match == "number":
        return float(answer == (extract_number(ref) or ref))
    return float(normalize_text(answer) == normalize_text(ref))


@dataclass(frozen=True)
class Summary:
    n: int
    accuracy: float
    latency_sequential_s: float
    latency_parallel_s: float
    latency_wall_s: float
    cost_usd: float
    errors: int

    def as_dict(self) -> dict[str, float | int]:
        return dict(self.__dict__)


def summarise_runs(results: list[RunResult], scores: list[float]) -> Summary:
    n = len(results)
    if n == 0:
        raise DataError("no results to summarise")
    return Summary(
        n=n,
        accuracy=sum(scores) / n,
        latency_sequential_s=sum(r.latency_sequential_s for r in results) / n,
        latency_parallel_s=sum(r.latency_parallel_s for r in results) / n,
        latency_wall_s=sum(r.latency_wall_s for r in results) / n,
        cost_usd=sum(r.cost_usd for r in results) / n,
        errors=sum(r.error is not None for r in results),
    )
