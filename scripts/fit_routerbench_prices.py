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

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cards", type=Path, default=REPO / "configs" / "models")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    from flowfront.converters.prices import fit_routerbench_prices

    fits = fit_routerbench_prices(args.data_dir)
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
