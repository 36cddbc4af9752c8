"""Draft model cards from an outcome table (``flowfront models init TABLE``).

A draft holds only what the table supports: prices fitted to recorded ``cost_usd`` against token
counts, a latency model fitted to recorded ``latency_s`` against token counts. A figure the table
cannot give is left out and listed in a comment, so replay marks it unavailable rather than
inventing it; the user fills it in (e.g. a provider's price page) to get modeled figures.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowfront.artifacts import write_atomic
from flowfront.modelcards import ModelCard, slugify
from flowfront.outcome_tables import OutcomeRow, OutcomeTable

MIN_ROWS = 5  # fewer calls than this fit nothing worth writing down


@dataclass(frozen=True)
class Draft:
    model: str
    fields: dict[str, float]
    notes: tuple[str, ...]

    def yaml(self) -> str:
        lines = [
            f"# Draft card for {self.model}, written by `flowfront models init` from an outcome table.",
            *[f"# {note}" for note in self.notes],
            f"name: {_quote(self.model)}",
            f"litellm_model: {_quote('openai/' + self.model)}  # the litellm route for live calls; replay "
            "ignores it",
        ]
        lines += [f"{key}: {value:.6g}" for key, value in self.fields.items()]
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    """A YAML scalar for ``text``: plain when safe, else a JSON string (valid YAML)."""
    return text if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", text) else json.dumps(text)


def _nnls(design: np.ndarray, target: np.ndarray) -> np.ndarray | None:
    from scipy.optimize import nnls

    if len(target) < MIN_ROWS or not np.any(design):
        return None
    solution, _ = nnls(design, target)
    return np.asarray(solution, dtype=float)


def _prices(rows: list[OutcomeRow]) -> tuple[dict[str, float], str]:
    usable = [r for r in rows if r.cost_usd is not None and r.prompt_tokens is not None
              and r.completion_tokens is not None]
    fit = _nnls(
        np.array([[r.prompt_tokens, r.completion_tokens] for r in usable], dtype=float).reshape(-1, 2) / 1e6,
        np.array([r.cost_usd for r in usable], dtype=float),
    )
    if fit is None:
        costs = [r.cost_usd for r in rows if r.cost_usd is not None]
        why = (f"cost_usd is recorded ({np.mean(costs):.3g} USD a call) but not token counts" if costs
               else "the table records no cost_usd")
        return {}, f"prices: {why}; add input_usd_per_mtok and output_usd_per_mtok for modeled cost"
    return ({"input_usd_per_mtok": fit[0], "output_usd_per_mtok": fit[1]},
            f"prices: least-squares fit of cost_usd to token counts over {len(usable)} rows")


def _latency(rows: list[OutcomeRow]) -> tuple[dict[str, float], str]:
    usable = [r for r in rows if r.latency_s is not None and r.completion_tokens is not None]
    prompt = np.array([r.prompt_tokens or 0 for r in usable], dtype=float)
    fit = _nnls(np.column_stack([np.ones(len(usable)), prompt, [r.completion_tokens for r in usable]]),
                np.array([r.latency_s for r in usable], dtype=float))
    if fit is None or fit[2] <= 0:
        why = ("latency_s is recorded but not completion_tokens" if any(r.latency_s is not None for r in rows)
               else "the table records no latency_s")
        return {}, f"latency: {why}; add decode_tok_per_s (and ttft_s, prefill_tok_per_s) for modeled latency"
    out = {"ttft_s": fit[0], "decode_tok_per_s": 1.0 / fit[2]}
    if fit[1] > 0:
        out["prefill_tok_per_s"] = 1.0 / fit[1]
    return out, f"latency: least-squares fit of latency_s = ttft + tokens / rate over {len(usable)} rows"


def draft_card(model: str, rows: list[OutcomeRow]) -> Draft:
    prices, price_note = _prices(rows)
    latency, latency_note = _latency(rows)
    draft = Draft(model, {**prices, **latency}, (price_note, latency_note))
    ModelCard.model_validate(
        {"name": model, "litellm_model": f"openai/{model}", **draft.fields}
    )  # fits are valid
    return draft


def write_drafts(table: OutcomeTable, folder: Path, *, skip: set[str], overwrite: bool = False) -> list[Path]:
    """One draft per model of ``table`` not in ``skip`` (models that already have a card)."""
    by_model: dict[str, list[OutcomeRow]] = {}
    for row in table:
        by_model.setdefault(row.model, []).append(row)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for model in sorted(set(by_model) - skip):
        path = folder / f"{slugify(model)}.yaml"
        if path.exists() and not overwrite:
            continue
        written.append(write_atomic(path, draft_card(model, by_model[model]).yaml().encode("utf-8")))
    return written
