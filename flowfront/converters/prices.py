"""Token prices recovered from recorded costs: the evidence behind the model cards' prices.

RouterBench records a cost per call but no price list; a non-negative least-squares fit of
``cost = (prompt * input + completion * output) / 1e6`` per model recovers the list prices (R²
≈ 1 when the provider billed by token), which is how ``configs/models/`` was checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fit_prices(prompt_tokens: np.ndarray, completion_tokens: np.ndarray, cost_usd: np.ndarray
               ) -> dict[str, float]:
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


def fit_routerbench_prices(data_dir: Path) -> dict[str, dict[str, float]]:
    """Fitted prices per RouterBench model (rows with a cost and a response)."""
    from flowfront.converters.routerbench import convert_routerbench

    table = convert_routerbench(data_dir)
    fits = {}
    for model in table.models:
        rows = [row for row in table.rows
                if row.model == model and row.cost_usd is not None and row.completion_tokens is not None]
        fits[model] = fit_prices(np.array([row.prompt_tokens for row in rows]),
                                 np.array([row.completion_tokens for row in rows]),
                                 np.array([row.cost_usd for row in rows]))
    return fits
