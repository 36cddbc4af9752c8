"""``flowfront grade``: grades for served answers without a human, written as feedback ``judge``.

A sample of the served decisions of one workflow (chosen by a hash of the response id, so the same
``--sample`` picks the same decisions on every run) is graded either by reference, where the
workflow's recorded data holds the query with a reference answer (exact comparison under the
benchmark's match rule, label ``reference``), or by an LLM judge through litellm (the workflow's
``judge`` prompt, label ``llm:<model>``). Decisions that already have a ``judge`` grade are skipped
and judge calls go through the trace store, so a killed run resumes without repeating one.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from flowfront.backends.base import Backend, CallRequest
from flowfront.errors import SpecError
from flowfront.parsers import extract_choice, extract_number, extract_verdict, normalize_text
from flowfront.spec import JudgeSpec, Message, Workflow
from flowfront.store import Decision, Feedback, TraceStore

__all__ = ["DEFAULT_JUDGE", "GradeReport", "grade_decisions", "in_sample"]

DEFAULT_JUDGE = JudgeSpec(
    messages=[
        Message(
            role="system", content="You grade answers. Judge only whether the answer is right, not its style."
        ),
        Message(
            role="user",
            content="Question:\n{query}\n\nAnswer:\n{answer}\n\nIs the answer correct? Reply with one "
            "word: CORRECT or INCORRECT.",
        ),
    ]
)
_MATCH = {"choice": extract_choice, "number": extract_number, "exact": normalize_text}


def in_sample(response_id: str, fraction: float) -> bool:
    """Whether a decision is in a sample of ``fraction``: the same ids on every run."""
    digest = hashlib.sha256(response_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass
class GradeReport:
    sampled: int = 0
    already: int = 0
    by_reference: int = 0
    by_judge: int = 0
    unparsed: int = 0

    def as_json(self) -> dict[str, int]:
        return dict(self.__dict__)


def _fill(template: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _reference_grade(d: Decision, references: dict[str, str], match: str) -> float | None:
    ref = references.get(d.query)
    parse = _MATCH.get(match)
    if ref is None or parse is None or d.answer is None:
        return None
    return float(parse(d.answer) == parse(ref))


async def _judge(backend: Backend, model: str, judge: JudgeSpec, d: Decision) -> float | None:
    messages = tuple(
        {"role": m.role, "content": _fill(m.content, {"query": d.query, "answer": d.answer or ""})}
        for m in judge.messages
    )
    done = await backend.complete(CallRequest(model, messages, judge.budget, sampling=dict(judge.sampling),
                                              node="judge", query_id=d.id))
    text = (done.text or "").strip()
    verdict = extract_verdict(text)
    if verdict is None and text:  # a small judge often answers with the bare word
        verdict = text.split()[0].strip(".:*!").lower()
    return {"correct": 1.0, "incorrect": 0.0}.get(verdict or "")


def grade_decisions(store: TraceStore, workflow: Workflow, decisions: list[Decision], *, sample: float,
                    references: dict[str, str], match: str, backend: Backend | None, judge_model: str | None,
                    concurrency: int = 4) -> GradeReport:
    """Grade the sampled, not yet graded, answered decisions; returns what was done."""
    if not 0 < sample <= 1:
        raise SpecError(f"--sample {sample} is not a share", hint="pass a number in (0, 1], e.g. 0.05")
    report = GradeReport()
    picked = [d for d in decisions if d.status == 200 and d.answer is not None and in_sample(d.id, sample)]
    report.sampled = len(picked)
    graded = {f.id for f in store.feedback(ids=[d.id for d in picked], name="judge")} if picked else set()
    report.already = len(graded)
    todo = [d for d in picked if d.id not in graded]
    rows: list[Feedback] = []
    needs_judge = []
    for d in todo:
        value = _reference_grade(d, references, match)
        if value is not None:
            rows.append(Feedback(d.id, "judge", value, "reference", None, source="reference"))
            report.by_reference += 1
        else:
            needs_judge.append(d)
    if needs_judge and (backend is None or judge_model is None):
        raise SpecError(f"{len(needs_judge)} sampled answers have no reference to grade by",
                        hint="pass --judge MODEL to grade them with an LLM judge")
    if rows:
        store.put_feedback(rows)
    if needs_judge:
        assert backend is not None and judge_model is not None
        asyncio.run(
            _judge_all(
                backend, judge_model, workflow.judge or DEFAULT_JUDGE, needs_judge, concurrency, report, store
            )
        )
    return report


async def _judge_all(
    backend: Backend,
    model: str,
    judge: JudgeSpec,
    decisions: list[Decision],
    concurrency: int,
    report: GradeReport,
    store: TraceStore,
) -> None:
    """Judge and record; grades are written every 50 and at the end, also when a call fails."""
    gate = asyncio.Semaphore(concurrency)
    rows: list[Feedback] = []
    written = 0

    async def one(d: Decision) -> None:
        async with gate:  # a failed call stops the run in one line; what was judged is in the store
            value = await _judge(backend, model, judge, d)
        if value is None:
            report.unparsed += 1
            return
        rows.append(Feedback(d.id, "judge", value, f"llm:{model}", None, source="judge"))
        report.by_judge += 1
        if len(rows) - written >= 50:  # written as it goes: a killed run keeps what it graded
            await flush()

    async def flush() -> None:
        nonlocal written
        batch, written = rows[written:], len(rows)
        if batch:
            await asyncio.to_thread(store.put_feedback, batch)

    try:
        await asyncio.gather(*(one(d) for d in decisions))
    finally:
        await flush()
        await backend.aclose()


def references_for(store: TraceStore, source: str) -> dict[str, str]:
    """Query text -> reference answer, for the queries of an imported source that have one."""
    return {text: ref for _, text, _, _, ref in store.queries(source) if ref}

