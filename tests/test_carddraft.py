"""`flowfront models init TABLE`: draft cards hold what the table supports and nothing invented."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from flowfront.backends.base import CallRequest
from flowfront.backends.prefix import Recorded, cut
from flowfront.backends.replay import completion_from_record
from flowfront.modelcards import load_model_card, load_model_cards
from flowfront.outcome_tables import read_outcome_table
from flowfront.runtime import load_cards
from flowfront.settings import Settings
from tests.helpers import cli_env, flowfront

# what the table is generated from: prices (USD / 1M tokens) and a latency model per model
TRUTH = {"lab/new-7b": (0.3, 0.9, 0.25, 2000.0, 60.0), "lab/new-70b": (1.2, 3.6, 0.6, 900.0, 25.0)}


def _table(path: Path, *, columns: tuple[str, ...]) -> Path:
    rng = np.random.default_rng(3)
    header = ["query_id", "query", "task", "model", "score", *columns]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i in range(40):
            prompt, completion = int(rng.integers(20, 400)), int(rng.integers(5, 300))
            for model, (p_in, p_out, ttft, prefill, decode) in TRUTH.items():
                values = {"prompt_tokens": prompt, "completion_tokens": completion,
                          "cost_usd": (prompt * p_in + completion * p_out) / 1e6,
                          "latency_s": ttft + prompt / prefill + completion / decode}
                writer.writerow([f"q{i}", f"question {i}?", "t", model, int(rng.random() < 0.5),
                                 *[values[c] for c in columns]])
    return path


@pytest.mark.slow  # starts a subprocess or a server
def test_drafts_fit_prices_and_latency_from_a_full_table(tmp_path: Path) -> None:
    table = _table(
        tmp_path / "t.csv", columns=("prompt_tokens", "completion_tokens", "cost_usd", "latency_s")
    )
    done = flowfront("models", "init", str(table), "--out", str(tmp_path / "cards"))
    assert done.returncode == 0, done.stderr
    cards = load_model_cards(tmp_path / "cards")
    for model, (p_in, p_out, ttft, prefill, decode) in TRUTH.items():
        card = cards[model]
        assert np.allclose([card.input_usd_per_mtok, card.output_usd_per_mtok], [p_in, p_out], rtol=1e-3)
        assert np.allclose(
            [card.ttft_s, card.prefill_tok_per_s, card.decode_tok_per_s], [ttft, prefill, decode], rtol=1e-3
        )


@pytest.mark.slow  # starts a subprocess or a server
def test_a_table_without_costs_or_latency_gives_cards_that_invent_nothing(tmp_path: Path) -> None:
    table = _table(tmp_path / "t.csv", columns=())
    done = flowfront("models", "init", str(table), "--out", str(tmp_path / "cards"))
    assert done.returncode == 0, done.stderr
    path = tmp_path / "cards" / "lab-new-7b.yaml"
    text = path.read_text()
    assert "records no cost_usd" in text and "records no latency_s" in text
    assert set(yaml.safe_load(text)) == {"name", "litellm_model"}
    card = load_model_card(path)
    assert not card.has_prices and not card.has_latency_model
    # replay with such a card: latency stays unavailable, cost what the record says (none: 0)
    rec = Recorded(
        response="B",
        prompt_tokens=10,
        completion_tokens=1,
        latency_s=None,
        cost_usd=None,
        score=1.0,
        error=None,
    )
    request = CallRequest(model=card.name, messages=({"role": "user", "content": "q"},), budget=None)
    done = completion_from_record(rec, request, cut(rec, None), {card.name: card}.get)
    assert done.latency_source == "unavailable" and done.cost_usd == 0.0
    # a second init leaves the user's edits alone
    path.write_text(text + "decode_tok_per_s: 50\n")
    again = flowfront("models", "init", str(table), "--out", str(tmp_path / "cards"))
    assert "no drafts written" in again.stdout and load_model_card(path).decode_tok_per_s == 50


def test_own_cards_overlay_the_built_in_ones(tmp_path: Path) -> None:
    table = read_outcome_table(_table(tmp_path / "t.csv", columns=("completion_tokens", "latency_s")))
    from flowfront.carddraft import write_drafts

    write_drafts(table, tmp_path / "cards", skip=set())
    settings = Settings(workdir=tmp_path, cards_dir=tmp_path / "cards")
    cards = load_cards(settings)
    assert {"lab/new-7b", "lab/new-70b", "gpt-4-1106-preview"} <= set(cards)
    assert cards["lab/new-7b"].has_latency_model and not cards["lab/new-7b"].has_prices
    assert load_cards(Settings(workdir=tmp_path, cards_dir=tmp_path / "none")).keys() == load_model_cards(
        settings.configs_dir / "models").keys()


@pytest.mark.slow  # starts a subprocess or a server
def test_init_on_a_missing_table_is_one_line(tmp_path: Path) -> None:
    done = flowfront("models", "init", str(tmp_path / "nope.csv"), env=cli_env())
    assert done.returncode != 0 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2


def test_token_counts_and_a_rate_in_a_card_give_modeled_latency() -> None:
    """The table's third way: token counts, plus a per-model rate the user adds to a draft card."""
    from flowfront.modelcards import ModelCard

    card = ModelCard(name="lab/new-7b", litellm_model="openai/lab/new-7b", decode_tok_per_s=50.0)
    rec = Recorded(response="answer", prompt_tokens=100, completion_tokens=200, latency_s=None, cost_usd=None,
                   score=1.0, error=None)
    request = CallRequest(model=card.name, messages=({"role": "user", "content": "q"},), budget=None)
    done = completion_from_record(rec, request, cut(rec, None), {card.name: card}.get)
    assert done.latency_source == "modeled" and done.latency_s == 200 / 50.0  # no ttft, no prefill rate given
    assert done.cost_usd == 0.0  # no prices in the card, none recorded
