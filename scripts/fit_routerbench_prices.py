"""Fit per-model token prices to RouterBench's recorded costs.

For each model, regress ``cost_usd`` on (prompt tokens, completion tokens) with non-negative
least squares and print the fitted USD per 1M input/output tokens with the fit's R², next to the
prices in ``configs/models/`` when a card exists. Tokens are cl100k counts (flowfront.tokens).

    python scripts/fit_routerbench_prices.py [--data-dir ../shared/data] [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def fit_prices(prompt_tokens: np.ndarray, completion_tokens: np.ndarray, cost_usd: np.ndarray) -> dict:
    """NNLS fit of cost = (prompt * input + completion * output) / 1e6; prices and R²."""
    from scipy.optimize import nnls

    design = np.column_stack([prompt_tokens, completion_tokens]).astype(np.float64) / 1e6
    (input_price, output_price), _ = nnls(design, cost_usd)
    residual = cost_usd - design @ np.array([input_price, output_price])
    total = float(((cost_usd - cost_usd.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else float("nan")
    return {
        "input_usd_per_mtok": float(input_price),
        "output_usd_per_mtok": float(output_price),
        "r2": r2,
        "n": int(len(cost_usd)),
        "max_abs_residual_usd": float(np.abs(residual).max()),
    }


def fit_routerbench(data_dir: Path) -> dict[str, dict]:
    """Fitted prices per RouterBench model (rows with a cost and a response)."""
    from flowfront.converters import convert_routerbench

    table = convert_routerbench(data_dir)
    fits = {}
    for model in table.models:
        rows = [
            row
            for row in table.rows
            if row.model == model and row.cost_usd is not None and row.completion_tokens is not None
        ]
        fits[model] = fit_prices(
            np.array([row.prompt_tokens for row in rows]),
            np.array([row.completion_tokens for row in rows]),
            np.array([row.cost_usd for row in rows]),
        )
    return fits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cards", type=Path, default=REPO / "configs" / "models")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    fits = fit_routerbench(args.data_dir)
    if args.json:
        print(json.dumps(fits, indent=2))
        return
    from flowfront.modelcards import load_model_cards

    cards = load_model_cards(args.cards) if args.cards.is_dir() and any(args.cards.glob("*.yaml")) else {}
    print(f"{'model':36} {'in $/Mtok':>10} {'out $/Mtok':>10} {'R2':>9} {'n':>6}   card in/out")
    for model, fit in fits.items():
        card = cards.get(model)
        used = f"{card.input_usd_per_mtok:g}/{card.output_usd_per_mtok:g}" if card else "-"
        print(
            f"{model:36} {fit['input_usd_per_mtok']:10.4f} {fit['output_usd_per_mtok']:10.4f} "
            f"{fit['r2']:9.6f} {fit['n']:6d}   {used}"
        )


if __name__ == "__main__":
    main()
