"""HTTP routes, one ``api_routes`` per module ("router" always means the model router here)."""

from __future__ import annotations

from typing import Any

# What each error status means on a workflow endpoint, said once for the OpenAPI page; a route
# names the statuses it can answer and overrides a wording where its own case is narrower.
_MEANINGS = {
    401: "missing or invalid API key",
    404: "unknown workflow",
    409: "infeasible preference or missing artifact",
    413: "body too large",
    422: "invalid request",
    502: "model call failed",
    503: "models unavailable; retry",
    504: "deadline exceeded",
}


def documented(*statuses: int, said: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route answering ``statuses``; ``said`` rewords some of them."""
    words = {**_MEANINGS, **(said or {})}
    return {s: {"description": words[s]} for s in sorted({*statuses, *(said or {})})}
