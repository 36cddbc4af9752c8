"""Compile artifacts: ``profiles.json`` and ``frontier.json``.

Both are versioned JSON with provenance (workflow hash, data hash, package versions). Loading
validates a copy before anything uses it; a mismatch or a corrupt file is a clear error.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from flowfront.artifacts import read_json_artifact, write_atomic
from flowfront.errors import CompileError
from flowfront.spec import Execution

__all__ = ["Candidate", "Estimates", "Frontier", "Profiles", "load", "save"]

PROFILES_SCHEMA = 1
FRONTIER_SCHEMA = 1


class _Artifact(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def content_hash(self) -> str:
        # Of what the artifact says, not when or how fast it was made: identical inputs give
        # identical hashes, so recompiling them never invalidates a router trained on the result.
        payload = self.model_dump(mode="json", exclude={"created_at", "packages", "search_seconds"})
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class ChoiceProfile(_Artifact):
    model: str
    budget: int | None
    n: int = Field(ge=1)
    accuracy: float = Field(ge=0, le=1)
    latency_mean_s: float = Field(ge=0)
    latency_p90_s: float = Field(ge=0)
    cost_mean_usd: float = Field(ge=0)
    prompt_tokens_mean: float = Field(ge=0)
    completion_tokens_mean: float = Field(ge=0)


class NodeProfile(_Artifact):
    group: str
    induced_n: int = Field(ge=0)
    choices: list[ChoiceProfile] = Field(min_length=1)


class GroupProfile(_Artifact):
    nodes: list[str]
    n_inputs: int = Field(ge=1)
    joint: dict[str, list[list[float]]] | None = None


class Profiles(_Artifact):
    schema_version: int = PROFILES_SCHEMA
    kind: str = "profiles"
    workflow: str
    workflow_hash: str
    benchmark: str
    data_source: str
    data_hash: str
    split: str
    seed: int
    n_queries: int
    n_reference_correct: int
    reference: dict[str, Any]
    nodes: dict[str, NodeProfile] = Field(min_length=1)
    groups: dict[str, GroupProfile]
    packages: dict[str, str] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)


class Estimates(_Artifact):
    accuracy: float
    latency_sequential_s: float
    latency_parallel_s: float
    cost_usd: float


class Candidate(_Artifact):
    id: str
    config: dict[str, Any]
    estimates: Estimates


class Frontier(_Artifact):
    schema_version: int = FRONTIER_SCHEMA
    kind: str = "frontier"
    workflow: str
    workflow_hash: str
    profiles_hash: str
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
    packages: dict[str, str] = Field(default_factory=dict)
    created_at: float = Field(default_factory=time.time)


def _checksum(data: dict) -> str:
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def save(artifact: _Artifact, path: Path) -> Path:
    """Write atomically (beside, fsync, rename): a reader never sees a half-written artifact, and a
    checksum over the content lets ``load`` refuse one edited or damaged since."""
    data = artifact.model_dump(mode="json")
    return write_atomic(path, orjson.dumps({**data, "checksum": _checksum(data)}, option=orjson.OPT_INDENT_2))


def load(cls: type[_Artifact], path: Path, *, expect_workflow_hash: str | None = None) -> Any:
    """Read and validate an artifact; errors name the file and say how to rebuild it."""
    kind = cls.model_fields["kind"].default
    rebuild = f"re-run `flowfront {'profile' if kind == 'profiles' else 'compile'}`"
    artifact = read_json_artifact(path, cls, kind=kind, schema_version=cls.model_fields["schema_version"].default,
                                  error=CompileError, hint=rebuild, checksum=_checksum)
    if expect_workflow_hash is not None and artifact.workflow_hash != expect_workflow_hash:
        raise CompileError(
            f"{path}: made for another version of workflow {artifact.workflow!r} "
            f"(hash {artifact.workflow_hash}, current {expect_workflow_hash})",
            hint=rebuild,
        )
    return artifact
