"""Request and response bodies of the HTTP API (they are also its OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowfront.router.select import Preference
from flowfront.spec import Execution

Strategy = Literal["router", "static"]
TaskHint = Annotated[str | None, Field(default=None, min_length=1, max_length=200, description=(
    "the query's task or domain, if the caller knows it: a task the router was trained on is used as the "
    "query's group; any other is reported as unused and the router predicts the task from the text"))]
# Bounds keep every product in selection finite; no meaningful trade-off needs more.
_MAX_LAMBDA = 1e6
_MAX_LIMIT = 1e9


class PreferenceIn(BaseModel):
    """How the caller trades accuracy for latency or cost (``router.select.Preference``)."""

    # strict: JSON `true` is not a number here, nor "0.3" (a string); integers are still numbers
    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False, strict=True)

    lambda_: float | None = Field(default=None, alias="lambda", ge=0.0, le=_MAX_LAMBDA,
                                  description="weight of normalised latency (or cost) against accuracy")
    max_latency_s: float | None = Field(default=None, gt=0.0, le=_MAX_LIMIT, description="hard latency limit")
    max_cost_usd: float | None = Field(
        default=None, gt=0.0, le=_MAX_LIMIT, description="hard cost limit per query"
    )
    min_accuracy: float | None = Field(default=None, ge=0.0, le=1.0, description="hard accuracy floor")
    objective: Literal["latency", "cost"] = Field(default="latency", description="axis lambda weighs")
    on_infeasible: Literal["error", "nearest"] = Field(
        default="error", description="when no candidate meets the limits: 409, or take the nearest")

    def to_preference(self) -> Preference:
        """The selection rules' own type (lambda defaults to 0 when nothing is set)."""
        return Preference.model_validate(self.model_dump(by_alias=True, exclude_none=True))


class RunRequest(BaseModel):
    """``POST /v1/workflows/{name}/run``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "query": "Which gas do plants absorb? (A) oxygen (B) carbon dioxide",
                    "preference": {"lambda": 0.5},
                },
                {
                    "query": "2 + 2 = ?",
                    "preference": {"max_latency_s": 1.0, "on_infeasible": "nearest"},
                    "strategy": "static",
                },
            ]
        },
    )

    query: str = Field(min_length=1, description="the input the workflow answers")
    preference: PreferenceIn = Field(default_factory=PreferenceIn)
    strategy: Strategy | None = Field(
        default=None, description="router (per query) or static; default: router when trained"
    )
    task: TaskHint = None

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank; send the text the workflow should answer")
        return value


class CandidateOut(BaseModel):
    id: str
    index: int
    config: dict[str, Any]


class Estimate(BaseModel):
    accuracy: float | None = None
    latency_s: float
    cost_usd: float


class Measured(BaseModel):
    latency_s: float = Field(
        description="latency under the frontier's execution model (recorded call latencies)"
    )
    latency_wall_s: float = Field(description="wall time the execution took in this process")
    cost_usd: float


class CallOut(BaseModel):
    node: str
    index: int
    model: str
    budget: int | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    latency_source: str
    cost_usd: float
    truncated: bool
    reused: bool = False  # a repeat of an identical call earlier in the run: nothing was called


class Attempt(BaseModel):
    candidate: str
    error: str
    model: str | None


class HintOut(BaseModel):
    task: str
    used: bool
    reason: str | None = Field(default=None, description="why an unused hint was not used")


class RunResponse(BaseModel):
    """What one served request did."""

    workflow: str
    trace_id: str
    answer: Any
    text: str | None
    strategy: Strategy
    candidate: CandidateOut
    predicted: Estimate
    measured: Measured
    feasible: bool = Field(description="false when on_infeasible='nearest' had to relax the limits")
    out_of_distribution: bool = Field(description="the router fell back to the static choice for this query")
    hint: HintOut | None = Field(
        default=None, description="what became of the request's task hint (none sent: null)"
    )
    fell_back: bool = Field(description="a failed call made the service run another candidate")
    attempts: list[Attempt] = Field(description="failed candidates before the one that answered")
    checkpoints: list[dict[str, Any]] = Field(
        default_factory=list,
        description="re-decisions at the workflow's checkpoints: where, from and to which candidate, "
                    "among which compatible ones, on what estimates (empty: none were made)")
    calls: list[CallOut]
    decision_ms: float
    execution_ms: float


class WorkflowOut(BaseModel):
    name: str
    description: str
    workflow_hash: str
    benchmark: str | None
    candidates: int
    strategies: list[Strategy]
    status: str


class FrontierCandidate(BaseModel):
    id: str
    index: int
    config: dict[str, Any]
    accuracy: float
    latency_s: float
    latency_sequential_s: float
    latency_parallel_s: float
    cost_usd: float


class FrontierOut(BaseModel):
    workflow: str
    benchmark: str
    execution: Execution
    objective: str
    frontier_hash: str
    router: bool
    candidates: list[FrontierCandidate]


# --- OpenAI-compatible chat ------------------------------------------------------------------


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatRequest(BaseModel):
    """OpenAI chat completions; ``model`` names the workflow, the preference rides in extra fields.

    A compiled configuration fixes each node's model, budget and sampling, so OpenAI's own
    sampling fields (temperature, top_p, seed, ...) cannot apply: they are accepted and named in
    the response's ``flowfront.ignored``. Fields that would change the answer's shape are refused
    with 422 rather than dropped: ``n`` > 1 (a workflow gives one answer), ``max_tokens`` /
    ``max_completion_tokens`` (budgets are per node; limit cost or latency with ``preference``),
    earlier turns of a conversation (a workflow answers one query), and ``tools``,
    ``tool_choice``, ``functions``, ``function_call`` and ``response_format`` (a compiled
    workflow answers in its nodes' own format; a 200 with plain text would pretend otherwise).
    """

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, description="the workflow to run")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = Field(default=False, strict=True)
    preference: PreferenceIn = Field(default_factory=PreferenceIn)
    strategy: Strategy | None = None
    task: TaskHint = None
    user: str | None = None
    n: int | None = Field(default=None, description="one answer per request: 1 or absent")
    max_tokens: int | None = Field(default=None, description="refused: each node's budget is compiled")
    max_completion_tokens: int | None = Field(default=None, description="refused, as max_tokens")
    tools: Any = Field(default=None, description="refused: workflows do not call tools")
    tool_choice: Any = Field(default=None, description="refused, as tools")
    functions: Any = Field(default=None, description="refused, as tools")
    function_call: Any = Field(default=None, description="refused, as tools")
    response_format: Any = Field(
        default=None, description="refused: the workflow's nodes fix the answer's format"
    )

    @field_validator("tools", "tool_choice", "functions", "function_call", mode="before")
    @classmethod
    def _no_tools(cls, value: object) -> object:
        if value is not None:
            raise ValueError("not supported: a compiled workflow calls no tools; leave this field out")
        return value

    @field_validator("response_format", mode="before")
    @classmethod
    def _no_format(cls, value: object) -> object:
        if value is not None and not (isinstance(value, dict) and value.get("type") == "text"):
            raise ValueError(
                'not supported: the workflow\'s nodes fix the answer\'s format (only {"type": "text"})'
            )
        return value

    @field_validator("n", mode="before")
    @classmethod
    def _one_answer(cls, value: object) -> object:
        if value not in (None, 1):
            raise ValueError("a workflow gives one answer per request: send n=1 or leave n out")
        return value

    @field_validator("max_tokens", "max_completion_tokens", mode="before")
    @classmethod
    def _no_token_cap(cls, value: object) -> object:
        if value is not None:
            raise ValueError(
                "does not apply: the compiled configuration sets each node's budget; limit cost or "
                "latency with preference.max_cost_usd / preference.max_latency_s"
            )
        return value

    @field_validator("messages", mode="after")
    @classmethod
    def _one_turn(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        turns = [m for m in messages if m.role not in ("system", "developer")]
        if len(turns) > 1:
            raise ValueError(f"a workflow answers one query, but the messages hold {len(turns)} conversation "
                             "turns: send the query as the only user message (system messages are ignored)")
        return messages

    def ignored(self) -> list[str]:
        """What was sent but cannot apply to a compiled workflow: extra fields, system messages."""
        system = [
            f"messages[{i}] ({m.role})"
            for i, m in enumerate(self.messages)
            if m.role in ("system", "developer")
        ]
        return sorted(self.model_extra or {}) + system

