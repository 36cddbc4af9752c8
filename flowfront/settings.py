"""Typed settings, validated once at the entry point and passed down explicitly.

Environment variables use the ``FLOWFRONT_`` prefix (``FLOWFRONT_DATA_DIR``, ``FLOWFRONT_WORKDIR``, ...).
There is no module-level settings object: the CLI and the service each build one.
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flowfront.errors import DataError
from flowfront.store.url import StoreURL, parse_store_url
from flowfront.workspace import Workspace

BackendName = Literal["replay", "replay-litellm", "litellm"]


def builtin_configs() -> Path:
    """The workflows, benchmarks and model cards shipped with the package (package data)."""
    return Path(str(files("flowfront.configs")))


def _default_data_dir() -> Path:
    """./data, else ../shared/data beside the current directory (where this project's data lives)."""
    here = Path.cwd()
    for candidate in (here / "data", here.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return here / "data"


class Settings(BaseSettings):
    """Where things live and how calls are made."""

    model_config = SettingsConfigDict(env_prefix="FLOWFRONT_", extra="ignore")

    data_dir: Path = Field(
        default_factory=_default_data_dir, description="recorded outcome data, read in place"
    )
    store: str | None = Field(
        default=None,
        description="the trace store: sqlite:///path/traces.sqlite (or a path) "
        "or postgresql://user@host:5432/db (default: traces.sqlite in the workdir)",
    )
    trace_store: str | None = Field(
        default=None,
        description="where served requests are logged (decisions, their "
        "calls, feedback): a store URL; default: the store itself when it is PostgreSQL, "
        "else serve/traces.sqlite in the workdir",
    )
    workdir: Path = Field(
        default=Path("runs"), description="trace store, artifacts, reports (default ./runs)"
    )
    configs_dir: Path = Field(
        default_factory=builtin_configs,
        description="workflows, benchmarks, model cards (default: the ones shipped with the package)",
    )
    cards_dir: Path = Field(
        default=Path("cards"),
        description="your own model cards (default ./cards, used when it "
        "exists): each overrides the built-in card of the same model; `flowfront models init` "
        "drafts them from an outcome table",
    )
    backend: BackendName = "replay"
    call_timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=3, ge=0, le=10)
    default_concurrency: int = Field(default=16, ge=1, description="per-model in-flight call limit")
    api_base: str | None = Field(default=None, description="one OpenAI-compatible base URL for every model "
                                 "(default: each model's own: a local server from `flowfront models serve`, "
                                 "the card's api_base, or the provider's)")
    provider_api_key: SecretStr | None = Field(
        default=None,
        description="key sent to api_base (providers' own "
        "keys come from their usual variables, e.g. OPENAI_API_KEY)",
    )
    models_dir: Path = Field(
        default=Path("~/.cache/flowfront/models"), description="local GGUF weights and servers.json"
    )
    query_limit: int | None = Field(
        default=None, ge=1, description="use only the first N queries of each split (a quick live run)"
    )
    live_transport: Literal["litellm", "direct"] = Field(
        default="litellm",
        description="how streamed calls to an OpenAI-compatible base URL are read: through "
        "litellm (the default), or directly with httpx (about half the client CPU a token; "
        "bench/results/live.json)",
    )
    stream_live_calls: Literal["auto", "always", "never"] = Field(
        default="auto",
        description="stream live calls to record time to first token and per-token times (the "
        "recorded latency of every smaller budget); auto: for local llama.cpp models",
    )

    @field_validator("data_dir", "workdir", "configs_dir", "cards_dir", "models_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def workspace(self) -> Workspace:
        """The workdir's layout (flowfront.workspace)."""
        return Workspace(self.workdir)

    @property
    def store_path(self) -> Path:
        """The default SQLite file of the workdir (what ``store_url`` names unless ``store`` is set)."""
        return self.workspace.store

    @property
    def store_url(self) -> StoreURL:
        """The trace store every command opens (recorded calls, the profiling cache, replay)."""
        return parse_store_url(self.store) if self.store else parse_store_url(self.workspace.store)

    @property
    def served_store_url(self) -> StoreURL:
        """Where served requests are logged. A separate SQLite file by default (a busy service never
        contends with profiling for one file's write lock); the same database when the store is
        PostgreSQL (served calls have tables of their own, so serving never changes what replay
        answers)."""
        if self.trace_store:
            return parse_store_url(self.trace_store)
        main = self.store_url
        return main if main.engine == "postgresql" else parse_store_url(self.workspace.serve_store)

    def require_data_dir(self) -> Path:
        """The data directory, or a DataError that says how to point at it."""
        if not self.data_dir.is_dir():
            raise DataError(
                f"data directory {self.data_dir} does not exist",
                hint="set FLOWFRONT_DATA_DIR or pass --data-dir to the folder holding routerbench/ and "
                     "llmrouter/",
            )
        return self.data_dir


def prepare_environment() -> None:
    """Process-wide switches every entry point needs before third-party imports.

    litellm fetches its price map from the internet at import unless told otherwise, and the
    embedding model must never be fetched from a hub.
    """
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # LightGBM's OpenMP workers spin while waiting; on 2 shared cores that starves everyone else.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
