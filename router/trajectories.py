"""What every candidate's run looked like at each checkpoint, for progressive routing.

Replay gives every train query's intermediate outputs under every candidate, so the checkpoint
router learns from executions and no new model calls. Per (query, candidate, checkpoint) a
:class:`Trajectories` holds whether the run reached the checkpoint, a signature of the calls it
had made (two candidates with the same signature at a checkpoint are compatible: either may be
switched to, which is exactly the executor's rule, ``flowfront.checkpoints``) and the state
features there (:func:`state_features`).

The features are the same function at training and at serving time: calls made per node, whether
each node's latest answer parses, its length and truncation, verdicts (a verifier's, a check's
agreement, a sandbox's pass/fail), agreement between the nodes' answers, and latency and cost so
far. Token log-probabilities are not among them: no recording here carries them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from flowfront.artifacts import Artifact, Provenance, read_npz, write_npz
from flowfront.checkpoints import Checkpoint
from flowfront.errors import RoutingError
from flowfront.spec import CodeNode, Workflow
from flowfront.values import Value

__all__ = ["Trajectories", "build_trajectories", "state_feature_names", "state_features"]

_TRUE = {True, "correct", "pass", "yes"}
_FALSE = {False, "incorrect", "fail", "no"}
_PER_LLM = ("calls", "parsed", "chars", "completion_tokens", "truncated", "latency_s", "verdict")
_PER_CODE = ("ran", "verdict")
_GLOBAL = (
    "spent_latency_sequential_s",
    "spent_latency_parallel_s",
    "spent_cost_musd",
    "n_calls",
    "n_distinct_answers",
    "answers_agree",
)


def state_feature_names(workflow: Workflow) -> list[str]:
    names = list(_GLOBAL)
    for name, node in workflow.nodes.items():
        names += [f"{name}.{f}" for f in (_PER_CODE if isinstance(node, CodeNode) else _PER_LLM)]
    return names


def _verdict(answer: Any) -> float:
    if isinstance(answer, (bool, str)):
        key = answer.lower() if isinstance(answer, str) else answer
        if key in _TRUE:
            return 1.0
        if key in _FALSE:
            return 0.0
    return np.nan


def _latest(value: Value | list[Value] | None) -> Value | None:
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def state_features(workflow: Workflow, point: Checkpoint) -> np.ndarray:
    """(F,) float32 in the order of :func:`state_feature_names`; NaN where a node has not run."""
    last = {}
    counts: dict[str, int] = {}
    for call in point.calls:
        last[call.node] = call
        counts[call.node] = counts.get(call.node, 0) + 1
    answers = []
    out: list[float] = []
    for name, node in workflow.nodes.items():
        value = _latest(point.values.get(name))
        if isinstance(node, CodeNode):
            out += [float(value is not None), _verdict(None if value is None else value.answer)]
            continue
        call = last.get(name)
        if call is None or value is None:
            out += [0.0] + [np.nan] * (len(_PER_LLM) - 1)
            continue
        if value.answer is not None:
            answers.append(repr(value.answer))
        out += [
            float(counts[name]),
            float(value.answer is not None),
            float(len(value.text or "")),
            float(call.completion_tokens),
            float(call.truncated),
            call.latency_s,
            _verdict(value.answer),
        ]
    distinct = len(set(answers))
    head = [
        point.latency_sequential_s,
        point.latency_parallel_s,
        point.cost_usd * 1e6,
        float(len(point.calls)),
        float(distinct),
        float(distinct == 1 and len(answers) > 1),
    ]
    return np.asarray(head + out, dtype=np.float32)


def _signature(keys: frozenset[str]) -> int:
    digest = hashlib.blake2b("\n".join(sorted(keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1  # 0 marks "not reached"


class TrajectoriesHeader(Artifact):
    ERROR = RoutingError
    REBUILD = "delete the benchmark's outcomes folder and re-run"
    kind: Literal["trajectories"] = "trajectories"
    schema_version: Literal[1] = 1
    query_ids: list[str]
    candidate_ids: list[str]
    checkpoint_ids: list[str]
    feature_names: list[str]


@dataclass(frozen=True)
class Trajectories:
    """``reached`` (Q, K, C) bool, ``signature`` (Q, K, C) int64 (0 where not reached) and
    ``state`` (Q, K, C, F) float32 over ``checkpoint_ids`` (``node#occurrence``)."""

    query_ids: list[str]
    candidate_ids: list[str]
    checkpoint_ids: list[str]
    feature_names: list[str]
    reached: np.ndarray
    signature: np.ndarray
    state: np.ndarray
    source_hash: str

    def rows(self, index: np.ndarray) -> Trajectories:
        idx = np.asarray(index)
        return Trajectories(
            [self.query_ids[i] for i in idx],
            self.candidate_ids,
            self.checkpoint_ids,
            self.feature_names,
            self.reached[idx],
            self.signature[idx],
            self.state[idx],
            self.source_hash,
        )

    def save(self, path: Path, *, workflow_hash: str) -> Path:
        header = TrajectoriesHeader(
            provenance=Provenance(workflow_hash=workflow_hash, data_hash=self.source_hash),
            query_ids=self.query_ids,
            candidate_ids=self.candidate_ids,
            checkpoint_ids=self.checkpoint_ids,
            feature_names=self.feature_names,
        )
        return write_npz(
            path, header, {"reached": self.reached, "signature": self.signature, "state": self.state}
        )

    @classmethod
    def load(cls, path: Path, *, expect_inputs_hash: str, expect_workflow_hash: str) -> Trajectories:
        meta, arrays = read_npz(
            path,
            TrajectoriesHeader,
            ("reached", "signature", "state"),
            expect_workflow_hash=expect_workflow_hash,
            expect_inputs_hash=expect_inputs_hash,
        )
        return cls(
            meta.query_ids,
            meta.candidate_ids,
            meta.checkpoint_ids,
            meta.feature_names,
            **arrays,
            source_hash=meta.provenance.data_hash,
        )


class _Recorder:
    """A checkpoint hook that never switches: it writes down each state it is shown."""

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow
        self.seen: dict[tuple[str, str], tuple[int, np.ndarray]] = {}

    async def __call__(self, point: Checkpoint) -> None:
        self.seen[point.query.query_id, point.id] = (
            _signature(point.keys),
            state_features(self.workflow, point),
        )


def build_trajectories(
    bench: Any,
    candidates: Sequence[dict],
    candidate_ids: Sequence[str],
    queries: Sequence[Any],
    backend: Any,
    settings: Any,
    *,
    source_hash: str,
    progress: bool = False,
) -> Trajectories:
    """Run every candidate over the queries with a recording checkpoint hook (replay: no model calls)."""
    from flowfront.executor import Executor
    from flowfront.progress import progress_bar
    from flowfront.space import Configuration, resolve

    wf = bench.workflow
    names = state_feature_names(wf)
    executor = Executor(
        wf, backend, concurrency=settings.default_concurrency, timeout_s=settings.call_timeout_s
    )
    per_candidate = []
    with progress_bar(
        f"checkpoints {len(queries)} queries x {len(candidates)} candidates",
        total=len(candidates) if progress else None,
    ) as advance:
        for config in candidates:
            recorder = _Recorder(wf)
            resolved = resolve(wf, Configuration.parse(config))

            async def run_all(recorder: _Recorder = recorder, resolved: Any = resolved) -> None:
                gate = asyncio.Semaphore(256)

                async def one(q: Any) -> None:
                    async with gate:
                        await executor.run(resolved, q, checkpoint=recorder)

                await asyncio.gather(*(one(q) for q in queries))

            asyncio.run(run_all())
            per_candidate.append(recorder.seen)
            if progress:
                advance(1)
    ids = sorted({cid for seen in per_candidate for _, cid in seen}, key=_flow_order(wf))
    q, k, c, f = len(queries), len(candidates), len(ids), len(names)
    reached = np.zeros((q, k, c), dtype=bool)
    signature = np.zeros((q, k, c), dtype=np.int64)
    state = np.full((q, k, c, f), np.nan, dtype=np.float32)
    row = {x.query_id: i for i, x in enumerate(queries)}
    col = {cid: i for i, cid in enumerate(ids)}
    for j, seen in enumerate(per_candidate):
        for (qid, cid), (sig, feats) in seen.items():
            reached[row[qid], j, col[cid]] = True
            signature[row[qid], j, col[cid]] = sig
            state[row[qid], j, col[cid]] = feats
    return Trajectories(
        [x.query_id for x in queries], list(candidate_ids), ids, names, reached, signature, state, source_hash
    )


def _flow_order(workflow: Workflow) -> Any:
    order = {name: i for i, name in enumerate(workflow.checkpoint_nodes())}

    def key(cid: str) -> tuple[int, int]:
        node, occurrence = cid.rsplit("#", 1)
        return int(occurrence), order.get(node, len(order))

    return key
