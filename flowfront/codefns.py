"""Registered functions for ``code`` nodes.

Each takes the upstream :class:`Value` objects named in the node's ``inputs`` (a sampled node
arrives as a list) plus the node's ``params``, and returns a Value. Functions keep the ``score``
of the value they pass on, so a vote or a cascade is graded on the call its answer came from.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from flowfront.parsers import extract_choice, extract_code, extract_number
from flowfront.values import Value

CodeFn = Callable[..., Value]

# How the compiler's proxy composes a code node's accuracy from its inputs' (compile/proxy.py):
# "agreement" (P(two answers match)), "vote" (majority of samples), "first-present" (the first
# input that ran), "graded-by-tests" (the tests' verdict is the code's accuracy), "any-passes"
# (right unless every sample is wrong), "pass-through" (a re-parse: its input's accuracy).
ProxyRule = Literal["agreement", "vote", "first-present", "graded-by-tests", "any-passes", "pass-through"]


def _flatten(inputs: list[Any]) -> list[Value | None]:
    out: list[Value | None] = []
    for item in inputs:
        out.extend(item if isinstance(item, list) else [item])
    return out


def majority_vote(*inputs: Any) -> Value:
    """The most common non-empty answer; with no strict majority winner, the first sample's answer.

    "No majority" follows the benchmark contract: when the top answer is tied with another, the
    first sample decides, so the result never depends on hash order.
    """
    samples = [v for v in _flatten(list(inputs)) if v is not None]
    if not samples:
        return Value(answer=None)
    counts = Counter(v.answer for v in samples if v.answer is not None)
    if not counts:
        return samples[0]
    ranked = counts.most_common()
    top_answer, top_count = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == top_count:
        return samples[0]
    return next(v for v in samples if v.answer == top_answer)


def agree(*inputs: Any) -> Value:
    """True when every input has the same non-empty answer."""
    values = _flatten(list(inputs))
    answers = [v.answer if v is not None else None for v in values]
    same = None not in answers and len(set(answers)) == 1
    return Value(answer=same, calls=tuple(c for v in values if v is not None for c in v.calls))


def coalesce(*inputs: Any) -> Value:
    """The first input that ran (e.g. the escalation's answer if it ran, else the first answer)."""
    for value in _flatten(list(inputs)):
        if value is not None:
            return value
    return Value(answer=None)


def first_passing(*inputs: Any) -> Value:
    """At-least-one fan-in (generate → test → select): the first sample that passes its test.

    "Passing" is the sample's grade — on replay the recorded test outcome (e.g. MBPP's unit tests);
    a live sample has no grade until a test step sets one, and then the first sample stands.
    """
    samples = [v for v in _flatten(list(inputs)) if v is not None]
    if not samples:
        return Value(answer=None)
    return next((v for v in samples if v.score is not None and v.score >= 0.5), samples[0])


def run_tests(code: Value | None, query: Value | None, **params: Any) -> Value:
    """generate → **test** → repair: whether the code passes the query's tests (a bool answer).

    A recorded grade of the code (replayed data) is the test outcome; otherwise the tests in the
    query's reference run in a sandboxed subprocess (:mod:`flowfront.sandbox`). The text is the
    failure, so a repair prompt may show it.
    """
    from flowfront.sandbox import reference_tests
    from flowfront.sandbox import run_tests as sandboxed

    if code is None:
        return Value(answer=False, text="no code")
    calls = code.calls
    if code.score is not None:
        passed = code.score >= 0.5
        return Value(answer=passed, text="" if passed else "the tests failed", calls=calls)
    tests = reference_tests(query.answer if query is not None else None)
    if tests is None:
        return Value(answer=None, text="the query has no tests", calls=calls)
    outcome = sandboxed(code.answer, *tests, **params)
    return Value(answer=outcome.passed, text=outcome.detail, calls=calls)


run_tests.blocking = True  # type: ignore[attr-defined]  # the executor runs it off the event loop


def _reparse(parse: Callable[[str], Any]) -> CodeFn:
    def fn(value: Value | None, **params: Any) -> Value:
        if value is None:
            return Value(answer=None)
        text = value.text if value.text is not None else str(value.answer)
        answer = parse(text, **params)
        # A re-parse keeps the recorded grade only if it does not change the answer.
        score = value.score if answer == value.answer else None
        return Value(answer=answer, text=text, score=score, calls=value.calls)

    fn.__name__ = parse.__name__
    fn.__doc__ = f"Re-parse an upstream text with ``{parse.__name__}``."
    return fn


CODE_FUNCTIONS: dict[str, CodeFn] = {
    "majority_vote": majority_vote,
    "agree": agree,
    "coalesce": coalesce,
    "first_passing": first_passing,
    "run_tests": run_tests,
    "extract_choice": _reparse(extract_choice),
    "extract_number": _reparse(extract_number),
    "extract_code": _reparse(extract_code),
}

# Every code function declares its proxy rule; a function without one cannot be compiled
# (the proxy refuses it rather than guess), which a test keeps true for every registered one.
PROXY_RULES: dict[str, ProxyRule] = {
    "majority_vote": "vote",
    "agree": "agreement",
    "coalesce": "first-present",
    "first_passing": "any-passes",
    "run_tests": "graded-by-tests",
    "extract_choice": "pass-through",
    "extract_number": "pass-through",
    "extract_code": "pass-through",
}
