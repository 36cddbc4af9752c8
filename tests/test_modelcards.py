"""Model cards: the shipped YAML files against the data, the latency/cost model, and loading errors."""

from __future__ import annotations

import ast
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from flowfront.errors import SpecError
from flowfront.modelcards import PROVIDER_CONCURRENCY, ModelCard, load_model_card, load_model_cards, slugify
from flowfront.tokens import count_tokens_many

REPO = Path(__file__).resolve().parents[1]
CARDS = REPO / "configs" / "models"
DATA_DIR = Path(os.environ.get("FLOWFRONT_DATA_DIR", REPO.parent / "shared" / "data"))
needs_data = pytest.mark.skipif(
    not (DATA_DIR / "routerbench").is_dir(), reason=f"no recorded data at {DATA_DIR}"
)

VALID = (
    "name: m\nlitellm_model: openai/m\ninput_usd_per_mtok: 1\noutput_usd_per_mtok: 2\n"
    "ttft_s: 0.5\nprefill_tok_per_s: 1000\ndecode_tok_per_s: 50\n"
)


@pytest.fixture(scope="module")
def cards() -> dict[str, ModelCard]:
    return load_model_cards(CARDS)


def _routerbench_rows(limit: int) -> tuple[list[str], list[dict[str, str]]]:
    with (DATA_DIR / "routerbench" / "arc_challenge_test.csv").open(newline="", encoding="utf-8") as handle:
        rows = [row for _, row in zip(range(limit), csv.DictReader(handle), strict=False)]
    return [c[: -len("|model_response")] for c in rows[0] if c.endswith("|model_response")], rows


@needs_data
def test_one_card_per_model_in_the_data_named_by_slug(cards):
    routerbench_models, _ = _routerbench_rows(1)
    scores = json.loads((DATA_DIR / "llmrouter" / "test_scores.json").read_text())
    recorded = {n: c for n, c in cards.items() if c.local is None}  # local cards serve live benchmarks
    assert set(recorded) == set(routerbench_models) | set(scores[0]["scores"])
    assert len(recorded) == 20
    for path in CARDS.glob("*.yaml"):
        assert path.stem == slugify(load_model_card(path).name)


def test_every_figure_has_a_comment():
    for path in CARDS.glob("*.yaml"):
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                assert "  # " in line, f"{path.name}: no source comment on {line!r}"


@needs_data
def test_routerbench_card_prices_reproduce_recorded_costs(cards):
    models, rows = _routerbench_rows(40)
    prompts = count_tokens_many(ast.literal_eval(row["prompt"])[0] for row in rows)
    for model in models:
        completions = count_tokens_many(ast.literal_eval(row[f"{model}|model_response"])[0] for row in rows)
        recorded = np.array([float(row[f"{model}|total_cost"]) for row in rows])
        # A row holding its prompt twice was billed twice for it; ARC test's first rows hold it once.
        assert np.allclose(cards[model].cost_usd(prompts, completions), recorded, rtol=1e-9, atol=1e-12), (
            model
        )


@needs_data
def test_llmrouter_card_prices_are_models_json(cards):
    for name, entry in json.loads((DATA_DIR / "llmrouter" / "models.json").read_text()).items():
        if name in cards:
            assert (cards[name].input_usd_per_mtok, cards[name].output_usd_per_mtok) == (
                entry["input_price"],
                entry["output_price"],
            )
            assert cards[name].litellm_model == f"nvidia_nim/{entry['model']}"


def test_latency_and_cost_model_on_numbers_and_arrays():
    card = ModelCard.model_validate(
        {
            "name": "m",
            "litellm_model": "openai/m",
            "input_usd_per_mtok": 2,
            "output_usd_per_mtok": 8,
            "ttft_s": 0.5,
            "prefill_tok_per_s": 1000,
            "decode_tok_per_s": 50,
        }
    )
    assert card.latency_s(2000, 100) == pytest.approx(0.5 + 2.0 + 2.0)
    assert card.cost_usd(1_000_000, 500_000) == pytest.approx(2 + 4)
    assert np.allclose(card.latency_s(np.array([0, 1000]), np.array([0, 50])), [0.5, 2.5])
    assert card.max_concurrency == PROVIDER_CONCURRENCY["openai"] and card.provider == "openai"
    with pytest.raises(ValidationError):
        card.ttft_s = 0.0  # frozen


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (VALID.replace("litellm_model: openai/m\n", ""), "litellm_model", "Field required"),
        (
            VALID.replace("input_usd_per_mtok: 1", "input_usd_per_mtok: -1"),
            "input_usd_per_mtok",
            "greater than",
        ),
        (VALID.replace("decode_tok_per_s: 50", "decode_tok_per_s: fast"), "decode_tok_per_s", "valid number"),
        (VALID + "colour: blue\n", "colour", "Extra inputs"),
        (VALID.replace("openai/m", "just-a-name"), "litellm_model", "pattern"),
        (VALID + "max_concurrency: 0\n", "max_concurrency", "greater than"),
    ],
)
def test_invalid_card_names_file_and_field(tmp_path, text, field, words):
    folder = _write(tmp_path / "models", "bad.yaml", text)
    with pytest.raises(SpecError) as caught:
        load_model_cards(folder)
    message = str(caught.value)
    assert "bad.yaml" in message and f"field {field!r}" in message and words in message


def test_loading_errors(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_model_cards(tmp_path / "absent")
    with pytest.raises(SpecError, match="no model cards"):
        load_model_cards(_write(tmp_path / "empty", "README.md", "nothing"))
    with pytest.raises(SpecError, match=r"broken\.yaml: line 2"):
        load_model_cards(_write(tmp_path / "syntax", "broken.yaml", "name: m\n  bad: [unclosed\n"))
    with pytest.raises(SpecError, match="expected a mapping"):
        load_model_cards(_write(tmp_path / "list", "list.yaml", "- a\n- b\n"))
    folder = _write(tmp_path / "dupes", "a.yaml", VALID)
    _write(folder, "b.yml", VALID + "max_concurrency: 3\n")
    with pytest.raises(SpecError) as caught:
        load_model_cards(folder)
    assert "b.yml" in str(caught.value) and "a.yaml" in str(caught.value) and "'m'" in str(caught.value)


def test_explicit_concurrency_and_unknown_provider_default(tmp_path):
    folder = _write(tmp_path / "ok", "m.yaml", VALID.replace("openai/m", "someprovider/m"))
    _write(folder, "n.yaml", VALID.replace("name: m", "name: n") + "max_concurrency: 3\n")
    loaded = load_model_cards(folder)
    assert loaded["m"].max_concurrency == 8 and loaded["n"].max_concurrency == 3


def test_price_fit_recovers_prices():
    from flowfront.converters.prices import fit_prices

    rng = np.random.default_rng(0)
    prompt, completion = rng.integers(10, 2000, 500), rng.integers(1, 400, 500)
    fit = fit_prices(prompt, completion, (prompt * 0.5 + completion * 1.5) / 1e6)
    assert fit["input_usd_per_mtok"] == pytest.approx(0.5) and fit["output_usd_per_mtok"] == pytest.approx(
        1.5
    )
    assert fit["r2"] == pytest.approx(1.0) and fit["n"] == 500
    noisy = fit_prices(
        prompt, completion, (prompt * 0.5 + completion * 1.5) / 1e6 + rng.normal(0, 2e-4, 500)
    )
    assert 0 < noisy["r2"] < 1
