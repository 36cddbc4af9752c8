"""The one exception tree of flowfront.

Every user-facing failure is a :class:`FlowfrontError` whose message says what to fix. The CLI
prints it as one line; the service maps it to an HTTP status in one place
(``service/errors.py``). Anything else escaping is a bug, and is shown as one.
"""

from __future__ import annotations

from typing import Any


class FlowfrontError(Exception):
    """Base of every error flowfront raises on purpose.

    ``hint`` is the "what to fix" half of the message, kept apart so the CLI and the
    HTTP layer can show it in their own way.
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class SpecError(FlowfrontError):
    """A workflow, benchmark, configuration, preference or data file is invalid."""


class DataError(SpecError):
    """Input data (outcome tables, datasets, the data directory) is missing or malformed."""


class StoreError(FlowfrontError):
    """The trace store cannot be opened or is corrupt."""


class CompileError(FlowfrontError):
    """Profiling or frontier search cannot produce a result (e.g. a filter leaves nothing)."""


class RoutingError(FlowfrontError):
    """A router or selection cannot pick a candidate (e.g. an infeasible hard limit)."""


class InfeasibleError(RoutingError):
    """No candidate satisfies the hard limits; ``nearest`` names the closest feasible one."""

    def __init__(
        self, message: str, *, nearest: dict[str, Any] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.nearest = nearest


class BackendError(FlowfrontError):
    """An LLM call failed. ``retryable`` says whether the same call may succeed later, and
    ``retry_after_s``, where known, when (the service's Retry-After)."""

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        retryable: bool = False,
        hint: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.model = model
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class ReplayMissError(BackendError):
    """The replay backend has no record for a call. Never answered with an invented response."""

    def __init__(self, model: str, prompt_key: str) -> None:
        super().__init__(
            f"replay has no record for model {model!r} and prompt key {prompt_key}",
            model=model,
            retryable=False,
            hint="import outcomes for this model (`flowfront data import`) or use a configuration "
            "whose models are in the recorded data",
        )
        self.prompt_key = prompt_key


class CallTimeoutError(BackendError):
    """A call exceeded its timeout; retryable, since a later call may be faster."""

    def __init__(self, model: str, timeout_s: float) -> None:
        super().__init__(
            f"call to {model!r} timed out after {timeout_s:g} s",
            model=model,
            retryable=True,
            hint="raise the per-call timeout or check that the provider is reachable",
        )


def is_retryable(exc: BaseException) -> bool:
    """Whether a failed call may succeed when tried again."""
    return isinstance(exc, BackendError) and exc.retryable


def first_invalid(exc: Any, whole: str) -> tuple[str, str]:
    """Where a pydantic ``ValidationError`` first failed (the dotted field path, or ``whole`` when the
    object itself was refused) and why, without pydantic's "Value error, " prefix: the two halves of
    a one-line message."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or whole
    return where, str(err["msg"]).removeprefix("Value error, ")
