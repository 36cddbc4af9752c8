"""PNG plots of compile results (matplotlib, Agg backend; imported only when plotting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_frontier(
    sample: dict[str, np.ndarray], front: list[dict], x_key: str, path: Path, title: str
) -> Path:
    """Every evaluated point (sampled when huge) in grey, the frontier highlighted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(
        sample[x_key], sample["accuracy"], s=4, c="0.75", label=f"evaluated ({len(sample[x_key]):,} shown)"
    )
    ordered = sorted(front, key=lambda p: (p[x_key], p["accuracy"]))
    fx = [p[x_key] for p in ordered]
    fy = [p["accuracy"] for p in ordered]
    ax.plot(fx, fy, "-o", c="tab:red", ms=4, lw=1.2, label=f"frontier ({len(front)})")
    ax.set_xlabel(x_key.replace("_", " "))
    ax.set_ylabel("estimated accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_validation(proxy_vals: dict, measured: dict, is_front: np.ndarray, path: Path, title: str) -> Path:
    """Proxy vs measured accuracy and latency for the executed configurations."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), dpi=120)
    for ax, key, label in ((axes[0], "accuracy", "accuracy"), (axes[1], "latency", "latency (s)")):
        x, y = np.asarray(proxy_vals[key]), np.asarray(measured[key])
        ax.scatter(x[~is_front], y[~is_front], s=14, c="0.6", label="sampled")
        ax.scatter(x[is_front], y[is_front], s=18, c="tab:red", label="frontier")
        lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
        ax.plot([lo, hi], [lo, hi], "--", c="0.3", lw=0.8)
        ax.set_xlabel(f"proxy {label}")
        ax.set_ylabel(f"measured {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
