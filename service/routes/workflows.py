"""``/v1/workflows``: list, frontier, run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request

from flowfront.service.deps import Authorized, ServedDep, lookup
from flowfront.service.engine import Outcome, run_request
from flowfront.service.errors import JSONBody, NotReady
from flowfront.service.routes import documented
from flowfront.service.schemas import (
    FrontierCandidate,
    FrontierOut,
    RunRequest,
    RunResponse,
    WorkflowOut,
)
from flowfront.service.state import WorkflowEntry

api_routes = APIRouter(prefix="/v1/workflows", tags=["workflows"], dependencies=[Authorized])

@api_routes.get("", response_model=list[WorkflowOut])
async def list_workflows(served: ServedDep) -> list[WorkflowOut]:
    """Every served workflow, its artifacts and the strategies it can serve."""
    return [_workflow_out(e) for e in served.state.entries.values()]


@api_routes.get(
    "/{name}/frontier",
    response_model=FrontierOut,
    responses=documented(401, 404, said={409: "not compiled"}),
)
async def frontier(name: str, served: ServedDep, request: Request) -> FrontierOut:
    """The frontier's candidates with their compile-time estimates."""
    entry = lookup(served.state, name)
    request.state.workflow = entry.name
    if entry.frontier is None:
        raise NotReady(
            f"workflow {name!r} has no frontier: {entry.status}", hint="compile it, then POST /admin/reload"
        )
    f = entry.frontier
    return FrontierOut(
        workflow=entry.name,
        benchmark=f.benchmark,
        execution=f.execution,
        objective=f.objective,
        frontier_hash=entry.frontier_hash,
        router=entry.router is not None,
        candidates=[
            FrontierCandidate(
                id=c.id,
                index=i,
                config=c.config,
                accuracy=c.estimates.accuracy,
                latency_s=float(entry.static[1][i]),
                latency_sequential_s=c.estimates.latency_sequential_s,
                latency_parallel_s=c.estimates.latency_parallel_s,
                cost_usd=c.estimates.cost_usd,
            )
            for i, c in enumerate(f.candidates)
        ],
    )


@api_routes.post(
    "/{name}/run",
    response_model=RunResponse,
    responses=documented(
        401, 404, 413, 422, 502, 503, 504,
        said={409: "infeasible preference (with the nearest option) or missing artifact"},
    ),
)
async def run(name: str, body: RunRequest, served: ServedDep, request: Request) -> JSONBody:
    """Route the query to a frontier candidate for this preference, execute it, return the answer."""
    entry = lookup(served.state, name)
    request.state.workflow = entry.name
    outcome = await run_request(
        served.shared,
        entry,
        body.query,
        body.preference.to_preference(),
        body.strategy,
        body.task,
        endpoint="run",
    )
    # Built by hand (the schema above documents it): validating our own output costs a third of a request.
    return JSONBody(run_response(outcome, served.shared.redactor.scrub), headers=headers(outcome))


def headers(outcome: Outcome) -> dict[str, str]:
    out = {
        "x-flowfront-candidate": outcome.entry.ids[outcome.index],
        "x-flowfront-trace-id": outcome.trace_id,
    }
    if outcome.fell_back:
        out["x-flowfront-fallback"] = str(len(outcome.attempts))
    return out


def run_response(outcome: Outcome, scrub: Callable[[str], str]) -> dict[str, Any]:
    """The native response body of a served request (the shape of :class:`RunResponse`)."""
    entry, result = outcome.entry, outcome.result
    assert result is not None and entry.frontier is not None and outcome.index is not None
    value = result.value
    text = value.text if value is not None else None
    return {
        "workflow": entry.name,
        "trace_id": outcome.trace_id,
        "answer": scrub(result.answer) if isinstance(result.answer, str) else result.answer,
        "text": scrub(text) if text is not None else None,
        "strategy": outcome.strategy,
        "candidate": {
            "id": entry.ids[outcome.index],
            "index": outcome.index,
            "config": entry.frontier.candidates[outcome.index].config,
        },
        "predicted": {
            "accuracy": outcome.predicted[0],
            "latency_s": outcome.predicted[1],
            "cost_usd": outcome.predicted[2],
        },
        "measured": {
            "latency_s": result.latency(entry.frontier.execution),
            "latency_wall_s": result.latency_wall_s,
            "cost_usd": outcome.log.cost_usd(),
        },
        "feasible": outcome.feasible,
        "out_of_distribution": outcome.ood,
        "hint": outcome.hint,
        "fell_back": outcome.fell_back,
        "attempts": outcome.attempts,
        "checkpoints": outcome.checkpoints,
        "calls": [
            {
                "node": c.node,
                "index": c.index,
                "model": c.model,
                "budget": c.budget,
                "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens,
                "latency_s": c.latency_s,
                "latency_source": c.latency_source,
                "cost_usd": c.cost_usd,
                "truncated": c.truncated,
                "reused": c.reused,
            }
            for c in result.calls
        ],
        "decision_ms": 1000 * outcome.decision_s,
        "execution_ms": 1000 * outcome.execution_s,
    }


def _workflow_out(entry: WorkflowEntry) -> WorkflowOut:
    return WorkflowOut(
        name=entry.name,
        description=entry.workflow.description,
        workflow_hash=entry.workflow.content_hash,
        benchmark=entry.benchmark,
        candidates=len(entry.ids),
        strategies=entry.strategies,
        status=entry.status,
    )
