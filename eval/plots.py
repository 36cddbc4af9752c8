"""The eval curves PNG (matplotlib, Agg backend; imported only when plotting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_curves"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _panel(ax, result: dict, axis: str) -> None:
    """One chart: every strategy's λ-sweep operating points and its non-decreasing hull as steps."""
    import matplotlib

    x_key = "latency_s" if axis == "latency" else "cost_usd"
    palette = matplotlib.colormaps["tab20"].colors
    colours = iter(palette[0::2] + palette[1::2])  # the strong shades first: neighbours stay distinguishable
    for name, st in result["strategies"].items():
        colour = next(colours)
        oracle = st["fitted_on"].startswith("test")
        x, y = np.asarray(st["curve"][x_key], dtype=float), np.asarray(st["curve"]["accuracy"], dtype=float)
        ax.scatter(x, y, s=14, color=colour, marker="x" if oracle else "o", zorder=3)
        hull = np.asarray(st["hull"][axis], dtype=float).reshape(-1, 2)
        if len(hull):
            # Extend the last step to the right edge: a slower budget keeps what the hull reached.
            hx = np.append(hull[:, 0], max(float(np.nanmax(x)), hull[-1, 0]))
            hy = np.append(hull[:, 1], hull[-1, 1])
            ax.step(hx, hy, where="post", color=colour, lw=1.3, ls="--" if oracle else "-", label=name)
    ax.set_xlabel("mean latency per query (s)" if axis == "latency" else "mean cost per query (USD)")
    ax.set_ylabel("accuracy")
    ax.grid(alpha=0.3)


def plot_curves(result: dict, path: Path) -> Path:
    """Accuracy–latency (left) and accuracy–cost (right) curves of every strategy on one figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), dpi=120)
    _panel(axes[0], result, "latency")
    _panel(axes[1], result, "cost")
    if result["latency_budgets_s"]:
        for b in result["latency_budgets_s"]:
            axes[0].axvline(b, color="0.85", lw=0.8, zorder=0)
    axes[1].legend(loc="lower right", fontsize=7)
    source = result["latency_source"].split(" ")[0]
    fig.suptitle(
        f"{result['benchmark']}: test split, λ sweep; latency {source}, {result['execution']} execution"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
