"""Compile artifacts: ``profiles.json`` and ``frontier.json``.

Both are :class:`flowfront.artifacts.Artifact`: versioned JSON with provenance (the workflow's hash,
the hash of the data or profiles they were made from, package versions), saved atomically and
validated on a copy before anything uses them: ``Profiles.load(path, expect_workflow_hash=...)``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flowfront.artifacts import Artifact, Provenance
from flowfront.errors import CompileError
from flowfront.spec import Execution, Workflow

__all__ = ["Candidate", "Estimates", "Frontier", "Profiles"]

PROFILES_SCHEMA = 2  # 2: workflow and data hashes in the provenance
FRONTIER_SCHEMA = 2


class _Part(BaseModel):
    # NaN and infinity are refused on load like any other out-of-range value: a frontier whose
    # estimates cannot be ranked must not be served
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ChoiceProfile(_Part):
    model: str
    budget: int | None
    n: int = Field(ge=1)
    accuracy: float = Field(ge=0, le=1)
    latency_mean_s: float = Field(ge=0)
    latency_p90_s: float = Field(ge=0)
    cost_mean_usd: float = Field(ge=0)
    prompt_tokens_mean: float = Field(ge=0)
    completion_tokens_mean: float = Field(ge=0)


class NodeProfile(_Part):
    group: str
    induced_n: int = Field(ge=0)
    choices: list[ChoiceProfile] = Field(min_length=1)


class GroupProfile(_Part):
    nodes: list[str]
    n_inputs: int = Field(ge=1)
    joint: dict[str, list[list[float]]] | None = None


class Profiles(Artifact):
    """Per node and (model, budget) choice, what the train split measured. ``provenance.data_hash``
    is the hash of the data the queries came from."""

    ERROR = CompileError
    REBUILD = "re-run `flowfront profile`"
    kind: Literal["profiles"] = "profiles"
    schema_version: Literal[2] = PROFILES_SCHEMA
    workflow: str
    benchmark: str
    data_source: str
    split: str
    seed: int
    n_queries: int
    n_reference_correct: int
    reference: dict[str, Any]
    nodes: dict[str, NodeProfile] = Field(min_length=1)
    groups: dict[str, GroupProfile]


class Estimates(_Part):
    accuracy: float = Field(ge=0, le=1)
    latency_sequential_s: float = Field(ge=0)
    latency_parallel_s: float = Field(ge=0)
    cost_usd: float = Field(ge=0)

    def latency(self, execution: str) -> float:
        """The latency under an execution model (``parallel``: the critical path; else the sum)."""
        return self.latency_parallel_s if execution == "parallel" else self.latency_sequential_s


class Candidate(_Part):
    id: str
    config: dict[str, Any]
    estimates: Estimates


class Frontier(Artifact):
    """The compiled Pareto set. ``provenance.data_hash`` is the content hash of the profiles it was
    composed from."""

    ERROR = CompileError
    REBUILD = "re-run `flowfront compile`"
    VOLATILE = frozenset({"search_seconds"})
    kind: Literal["frontier"] = "frontier"
    schema_version: Literal[2] = FRONTIER_SCHEMA
    workflow: str
    benchmark: str
    objective: str
    execution: Execution
    proxy_mode: str
    method: str
    filters: dict[str, Any]
    space_size: int
    n_evaluated: int
    search_seconds: float
    candidates: list[Candidate] = Field(min_length=1)

    @classmethod
    def of_configurations(cls, workflow: Workflow, configs: list[dict[str, Any]],
                          estimates: list[Estimates]) -> Frontier:
        """A frontier of configurations chosen by hand, with the estimates given (no profiling, no
        search): serving a fixed configuration, or a handful, through the same service path."""
        if len(configs) != len(estimates) or not configs:
            raise CompileError("a frontier needs one estimate per configuration, and at least one",
                               hint="pass as many estimates as configurations")
        candidates = [
            Candidate(id=f"c{i}", config=c, estimates=e)
            for i, (c, e) in enumerate(zip(configs, estimates, strict=True))
        ]
        return cls(
            workflow=workflow.name,
            provenance=Provenance(workflow_hash=workflow.content_hash, data_hash="by-hand"),
            benchmark=workflow.name,
            objective="latency",
            execution="parallel",
            proxy_mode="by-hand",
            method="by hand",
            filters={},
            space_size=len(configs),
            n_evaluated=len(configs),
            search_seconds=0.0,
            candidates=candidates,
        )
