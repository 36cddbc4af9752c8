"""Profiling: measure every (model, budget) choice of every ``llm`` node on its induced dataset.

1. Run a reference configuration on the train split. The calls it made on runs that ended
   correct form each node's *induced dataset* (nodes with the same messages template share one,
   since they see the same inputs).
2. Issue every choice of the node on every induced input and grade it: the recorded grade on
   replay; otherwise agreement with the reference call's answer (the reference run ended correct,
   so its answer is taken as right), or an LLM judge when one is configured.
3. Aggregate accuracy, latency (mean, p90), cost and tokens per choice, plus pairwise statistics
   between choices of a group (both correct, same wrong answer, escalation difficulty) that the
   proxy's correlated mode uses. They come from the same calls: no extra call is made for them.

Everything goes through the backend, so on the litellm path the trace store caches every call
and a re-run or a resumed run makes no new ones.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from flowfront.artifacts import Provenance
from flowfront.backends.base import Backend, CallRequest
from flowfront.benchmarks import Benchmark, grade
from flowfront.compile.artifact import ChoiceProfile, GroupProfile, NodeProfile, Profiles
from flowfront.errors import BackendError, CompileError, SpecError
from flowfront.executor import Executor, Query, completion_value
from flowfront.parsers import PARSERS, normalize_text
from flowfront.space import Configuration, node_choices, resolve
from flowfront.spec import LLMNode, parse_model, read_yaml

_MAX_JOINT_CHOICES = 80  # pairwise/triple statistics cost O(choices^3 * inputs); beyond this, skip them


@dataclass
class _Input:
    messages: tuple[dict, ...]
    reference_answer: object


class Judge(BaseModel):
    """An LLM judge (``configs/judge.yaml``) for calls that carry no recorded grade."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    model: str
    budget: int | None = 8
    messages: list[dict[str, str]]

    @classmethod
    def load(cls, path: Path) -> Judge:
        return parse_model(cls, read_yaml(path), str(path))

    async def grade(self, backend: Backend, item: _Input, candidate: str | None) -> float:
        fill = {
            "input": "\n".join(m["content"] for m in item.messages),
            "reference": "" if item.reference_answer is None else str(item.reference_answer),
            "candidate": candidate or "",
        }
        messages = tuple({"role": m["role"], "content": _fill(m["content"], fill)} for m in self.messages)
        done = await backend.complete(CallRequest(self.model, messages, self.budget))
        return float((done.text or "").strip().upper().startswith("YES"))


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _group_key(node: LLMNode) -> tuple:
    return (
        tuple((m.role, m.content) for m in node.messages),
        node.parser,
        tuple(sorted(node.sampling.items())),
    )


async def _reference_inputs(
    bench: Benchmark, backend: Backend, reference: Configuration, queries: Sequence[Query], concurrency: int
) -> tuple[dict[str, dict[str, _Input]], int]:
    """Per node, the distinct inputs of its calls: on every reference run where the call carries a
    recorded grade (the grade measures the node itself, so no filter is needed and none biases
    it), else on the runs that ended correct (FlowCompile's induced dataset: the reference's
    answer is then taken as right)."""
    executor = Executor(bench.workflow, backend, concurrency=concurrency, keep_requests=True)
    results = await executor.run_batch(resolve(bench.workflow, reference), queries)
    induced: dict[str, dict[str, _Input]] = {n: {} for n in bench.workflow.llm_nodes()}
    correct = 0
    for res, query in zip(results, queries, strict=True):
        if res.error is not None:
            continue
        right = grade(res, query, bench.spec.match) >= 0.5
        correct += right
        for call in res.calls:
            if right or call.score is not None:
                key = CallRequest(model="", messages=call.request.messages).prompt_key
                induced[call.node].setdefault(key, _Input(call.request.messages, call.answer))
    return induced, correct


def _fallback_references(bench: Benchmark, induced: dict, reference: Configuration, limit: int = 16):
    """Configurations to try, one at a time while some node has no inputs: a seeded spread over the space."""
    from flowfront.space import all_configurations

    try:
        pool = all_configurations(bench.workflow, limit=20_000)
    except SpecError:  # a space too large to list has no fallback: the error below says what to do
        return
    rng = random.Random(0)
    rng.shuffle(pool)
    for config in pool[:limit]:
        if all(induced.values()):
            return
        if config.key() != reference.key():
            yield config


def _answer_key(answer: object) -> str | None:
    return None if answer is None else normalize_text(str(answer)) or str(answer)


async def _measure_group(
    nodes: list[str], bench: Benchmark, backend: Backend, inputs: list[_Input], progress, concurrency: int,
    judge: Judge | None = None,
):
    """Every choice of the group on every input: (score, answer id, latency, cost, tokens) arrays."""
    node = bench.workflow.llm_nodes()[nodes[0]]
    choices = node_choices(node)
    parse = PARSERS[node.parser]
    limits: dict[str, asyncio.Semaphore] = {}
    n, m = len(inputs), len(choices)
    score = np.zeros((n, m))
    answer: list[list[str | None]] = [[None] * m for _ in range(n)]
    lat, cost, ptok, ctok = (np.zeros((n, m)) for _ in range(4))

    async def one(i: int, j: int) -> None:
        choice = choices[j]
        sem = limits.setdefault(
            choice.model, asyncio.Semaphore(backend.concurrency(choice.model) or concurrency)
        )
        request = CallRequest(
            choice.model, inputs[i].messages, choice.budget, node.sampling, budgets=tuple(node.budgets)
        )
        async with sem:
            done = await backend.complete(request)
        value = completion_value(parse, done)
        graded = value.score
        if graded is None and judge is not None:  # live path: the LLM judge decides
            graded = await judge.grade(backend, inputs[i], done.text)
        elif graded is None:  # live path, no judge: agree with the reference run's answer
            graded = float(_answer_key(value.answer) == _answer_key(inputs[i].reference_answer))
        score[i, j] = graded
        answer[i][j] = _answer_key(value.answer)
        lat[i, j], cost[i, j] = done.latency_s, done.cost_usd
        ptok[i, j], ctok[i, j] = done.prompt_tokens, done.completion_tokens
        progress(1)

    try:
        await asyncio.gather(*(one(i, j) for i in range(n) for j in range(m)))
    except BackendError as exc:
        raise CompileError(
            f"profiling node {nodes[0]!r} failed: {exc}", hint="check the backend and the data"
        ) from None
    return choices, score, answer, lat, cost, ptok, ctok


def _choice_profiles(choices, score, lat, cost, ptok, ctok) -> list[ChoiceProfile]:
    return [
        ChoiceProfile(
            model=c.model, budget=c.budget, n=int(score.shape[0]),
            accuracy=float(score[:, j].mean()),
            latency_mean_s=float(lat[:, j].mean()), latency_p90_s=float(np.quantile(lat[:, j], 0.9)),
            cost_mean_usd=float(cost[:, j].mean()),
            prompt_tokens_mean=float(ptok[:, j].mean()), completion_tokens_mean=float(ctok[:, j].mean()),
        )
        for j, c in enumerate(choices)
    ]


def joint_statistics(score: np.ndarray, answer: list[list[str | None]]) -> dict[str, list[list[float]]]:
    """Pairwise statistics over choices from one (inputs x choices) outcome table.

    - ``both_correct[i][j]`` = P(i and j correct);
    - ``same_wrong[i][j]`` = P(i and j both wrong with the same parsed answer);
    - ``disagree_ratio[i][j]`` = mean over k of P(k correct | i, j disagree) / P(k correct): how much
      harder the inputs two choices disagree on are, for the escalation after a disagreement.
    """
    correct = (score >= 0.5).astype(np.float64)
    n, m = correct.shape
    ids = np.full((n, m), -1, dtype=np.int64)
    vocab: dict[str, int] = {}
    for i, row in enumerate(answer):
        for j, a in enumerate(row):
            if a is not None:
                ids[i, j] = vocab.setdefault(a, len(vocab))
    both = correct.T @ correct / n
    wrong = 1.0 - correct
    same = (ids[:, :, None] == ids[:, None, :]) & (ids[:, :, None] >= 0)
    same_wrong = np.einsum("ni,nj,nij->ij", wrong, wrong, same) / n
    disagree = ~same
    p_dis = disagree.mean(axis=0)
    p_k = np.maximum(correct.mean(axis=0), 1e-9)
    joint_k = np.einsum("nij,nk->ijk", disagree.astype(np.float64), correct) / n
    ratio = np.where(p_dis[:, :, None] > 0, joint_k / np.maximum(p_dis[:, :, None], 1e-12) / p_k, 1.0).mean(
        axis=2
    )
    return {
        "both_correct": both.tolist(),
        "same_wrong": same_wrong.tolist(),
        "disagree_ratio": ratio.tolist(),
    }


async def profile_async(
    bench: Benchmark,
    backend: Backend,
    queries: Sequence[Query],
    *,
    reference: Configuration,
    concurrency: int = 16,
    progress=None,
    judge: Judge | None = None,
) -> tuple[dict[str, NodeProfile], dict[str, GroupProfile], int]:
    induced, n_correct = await _reference_inputs(bench, backend, reference, queries, concurrency)
    for extra in _fallback_references(bench, induced, reference):
        # A node the reference never reaches (a refine step its verifier never triggers) is
        # profiled on the inputs it gets under configurations that do reach it.
        more, _ = await _reference_inputs(bench, backend, extra, queries, concurrency)
        for name, inputs in more.items():
            if not induced[name]:
                induced[name] = inputs
    if n_correct == 0:
        raise CompileError(
            "no reference run ended correct, so no node has an induced dataset",
            hint="choose a stronger --reference configuration or more --max-queries",
        )
    groups: dict[tuple, list[str]] = {}
    for name, node in bench.workflow.llm_nodes().items():
        groups.setdefault(_group_key(node), []).append(name)
    nodes: dict[str, NodeProfile] = {}
    group_profiles: dict[str, GroupProfile] = {}
    tick = progress or (lambda n: None)
    for members in groups.values():
        merged: dict[str, _Input] = {}
        for name in members:
            merged.update(induced[name])
        if not merged:  # never ran on a correct reference run: profile on the group's first inputs
            raise CompileError(
                f"node {members[0]!r} has no induced inputs", hint="choose a --reference that runs it"
            )
        inputs = list(merged.values())
        choices, score, answer, lat, cost, ptok, ctok = await _measure_group(
            members, bench, backend, inputs, tick, concurrency, judge
        )
        profiles = _choice_profiles(choices, score, lat, cost, ptok, ctok)
        gname = "+".join(members)
        joint = joint_statistics(score, answer) if len(choices) <= _MAX_JOINT_CHOICES else None
        group_profiles[gname] = GroupProfile(nodes=members, n_inputs=len(inputs), joint=joint)
        for name in members:
            nodes[name] = NodeProfile(group=gname, induced_n=len(induced[name]), choices=profiles)
    return nodes, group_profiles, n_correct


def run_profile(
    bench: Benchmark,
    backend: Backend,
    queries: Sequence[Query],
    *,
    reference: Configuration,
    data_source: str,
    data_hash: str,
    max_queries: int | None = None,
    seed: int = 0,
    concurrency: int = 16,
    show_progress: bool = False,
    judge: Judge | None = None,
) -> Profiles:
    """Profile a benchmark's workflow; returns a new Profiles artifact."""
    chosen = list(queries)
    if max_queries is not None and max_queries < len(chosen):
        chosen = random.Random(seed).sample(chosen, max_queries)
    if not chosen:
        raise CompileError("no queries to profile on", hint="check the split and --max-queries")
    resolve(bench.workflow, reference)

    async def go(progress):
        return await profile_async(
            bench,
            backend,
            chosen,
            reference=reference,
            concurrency=concurrency,
            progress=progress,
            judge=judge,
        )

    if show_progress:
        from flowfront.progress import progress_bar

        # the total counts every choice on every query; a node's induced inputs are fewer
        total = sum(len(node_choices(n)) for n in bench.workflow.llm_nodes().values()) * len(chosen)
        with progress_bar(f"profiling {bench.name}", total=total) as advance:
            nodes, groups, n_correct = asyncio.run(go(advance))
    else:
        nodes, groups, n_correct = asyncio.run(go(None))
    return Profiles(
        workflow=bench.workflow.name, benchmark=bench.name, data_source=data_source, split="train", seed=seed,
        provenance=Provenance(workflow_hash=bench.workflow.content_hash, data_hash=data_hash),
        n_queries=len(chosen), n_reference_correct=n_correct,
        reference=reference.model_dump(mode="json"), nodes=nodes, groups=groups,
    )
