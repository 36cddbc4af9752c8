"""Service settings: the shared :class:`Settings` plus what serving needs, from ``FLOWFRONT_*``.

Validated once at the entry point (:func:`service.server.serve` or a test building the app).
List settings (``FLOWFRONT_API_KEYS``, ``FLOWFRONT_FAULT_FAIL_MODELS``, ...) are comma separated.
API keys are ``SecretStr``, so they never show in a repr, a log line or an error.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from flowfront.errors import SpecError
from flowfront.settings import Settings

__all__ = ["ServiceSettings", "check_bind", "is_loopback"]


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class ServiceSettings(Settings):
    """Everything ``flowfront serve`` reads; the defaults suit one process on a small machine."""

    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="bearer tokens accepted by the API (comma separated)")
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, description="request bodies above this get 413")
    max_query_chars: int = Field(default=32_000, ge=16, description="longer queries get 422")
    request_deadline_s: float = Field(
        default=30.0, gt=0, description="budget for routing, execution and fallbacks"
    )
    max_fallbacks: int = Field(
        default=2, ge=0, le=10, description="other candidates tried after a failed call"
    )
    breaker_failures: int = Field(
        default=5, ge=1, description="consecutive failures that open a model's breaker"
    )
    breaker_reset_s: float = Field(
        default=30.0, gt=0, description="open time before a breaker lets one probe through"
    )
    trace_flush_interval_s: float = Field(
        default=0.2, gt=0, le=60, description="longest a served trace waits"
    )
    trace_durable: bool = Field(default=True, description="a response waits until its trace is committed "
                                "(group commit), so kill -9 loses no trace of an answered request")
    trace_max_age_days: float | None = Field(
        default=30.0, gt=0, description="served traces older than this are deleted (none: keep forever)"
    )
    trace_max_mb: float | None = Field(
        default=1024.0,
        gt=0,
        description="the served-trace store is pruned, oldest first, to stay under this size (none: no cap)",
    )
    trace_prune_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="how often retention runs on the served "
        "store (in the background, never on a request's commit)",
    )
    trace_batch_size: int = Field(default=512, ge=1, description="traces written per SQLite transaction")
    trace_queue_max: int = Field(default=100_000, ge=1, description="queued traces before responses wait")
    fault_fail_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="models whose calls fail (fault drills)")
    fault_hang_models: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="models whose calls hang until the call timeout (fault drills)")
    batch_max_size: int = Field(
        default=64, ge=1, le=1024, description="queries per embedding/prediction batch"
    )
    batch_wait_ms: float = Field(default=0.0, ge=0, le=100, description="extra wait to fill a batch")
    # One thread: a second one buys single-query latency on an idle box but costs more CPU per query,
    # which a loaded server (event loop + boosters on the other core) cannot spare.
    embed_threads: int = Field(default=1, ge=1, le=64, description="onnxruntime threads per embedding batch")
    embedding_disk_cache: bool = Field(
        default=False,
        description="also use train/eval's on-disk embedding cache "
        "(read and grown by served queries; off: the bounded in-memory caches only)",
    )
    embedding_cache_max_mb: float = Field(
        default=512.0,
        gt=0,
        description="the on-disk embedding cache (when on) keeps its newest vectors within this size",
    )
    route_memo_size: int = Field(
        default=16_384, ge=0, description="queries whose router estimates stay memoised"
    )
    feature_lru_size: int = Field(
        default=16_384, ge=0, description="queries whose router features stay in memory"
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="a connection must send a complete "
        "request head within this long, or it is closed (slow-header clients)",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="a request body must arrive whole within "
        "this long of its first byte, else 408 (slow-body clients)",
    )
    body_min_bytes_per_s: float = Field(
        default=1024.0,
        ge=0,
        description="after a 2 s grace a body must keep "
        "arriving at this rate, else 408 (0: only the total deadline)",
    )
    max_head_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="request heads (request line and headers) above this are refused with 431",
    )
    keep_alive_s: int = Field(
        default=5, ge=1, le=300, description="idle keep-alive connections close after this"
    )
    max_connections: int = Field(default=1024, ge=1, description="connections (and requests) served at once; "
                                 "beyond it new ones get 503")
    shutdown_grace_s: float = Field(
        default=30.0, gt=0, description="how long SIGTERM waits for requests in flight"
    )
    explore: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="probability of routing a request to a "
        "candidate drawn uniformly among those within the caller's hard limits (logged with its "
        "propensity, for off-policy evaluation and retraining); 0: always the router's choice",
    )
    drift_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="how often drift is measured over the last window of served traffic (0: never)",
    )
    drift_window_s: float = Field(default=3600.0, gt=0, description="the window drift is measured over")
    drift_psi: float = Field(
        default=0.25,
        gt=0,
        description="alarm above this population stability index of the "
        "served task mix against the training mix",
    )
    drift_ood_share: float = Field(
        default=0.10,
        gt=0,
        le=1,
        description="alarm above this share of queries the router flags out of distribution",
    )
    drift_ece: float = Field(
        default=0.10,
        gt=0,
        le=1,
        description="alarm above this calibration error of predicted accuracy against grades",
    )
    drift_latency_ratio: float = Field(
        default=1.5,
        gt=1,
        description="alarm when realised latency is off the predicted one by more than this factor",
    )
    generation_poll_s: float = Field(default=2.0, ge=0, le=300, description="how often a replica checks the "
                                     "shared store for a reload made by another replica (0: never)")
    otel: bool = Field(default=False, description="export a span per request (and per model call) over OTLP; "
                       "also on when OTEL_EXPORTER_OTLP_ENDPOINT is set (the otel extra)")
    access_log: bool = Field(default=True, description="one uvicorn log line per request")
    log_level: str = Field(default="info", pattern=r"^(critical|error|warning|info|debug)$")

    @field_validator("api_keys", "fault_fail_models", "fault_hang_models", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any) -> Any:
        return _split_commas(value)

    @model_validator(mode="after")
    def _coherent(self) -> ServiceSettings:
        both = set(self.fault_fail_models) & set(self.fault_hang_models)
        if both:
            raise ValueError(
                f"model {sorted(both)[0]!r} is in both FLOWFRONT_FAULT_FAIL_MODELS and _HANG_MODELS"
            )
        return self

    @field_validator("api_keys", mode="after")
    @classmethod
    def _long_keys(cls, keys: list[SecretStr]) -> list[SecretStr]:
        if any(len(k.get_secret_value()) < 8 for k in keys):
            raise ValueError("every API key must have at least 8 characters")
        return keys

    def key_values(self) -> list[str]:
        """The accepted bearer tokens (only the auth check should call this)."""
        return [k.get_secret_value() for k in self.api_keys]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: ServiceSettings, host: str) -> None:
    """Refuse to listen beyond loopback without API keys."""
    if not is_loopback(host) and not settings.api_keys:
        raise SpecError(
            f"refusing to serve on {host!r} without API keys: anyone who can reach it could spend your "
            "provider budget",
            hint="set FLOWFRONT_API_KEYS (comma separated, 8+ characters each) or bind to 127.0.0.1",
        )
