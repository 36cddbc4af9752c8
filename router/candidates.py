"""Candidate features for the conditioned router: a one-hot of each configuration's settings."""

from __future__ import annotations

import numpy as np

__all__ = ["candidate_features"]


def candidate_features(candidates: list[dict]) -> tuple[np.ndarray, list[str]]:
    """One-hot (K, C) of every node setting and knob value, with the column names.

    A node given per call (a list of settings) contributes ``node[i].model=...`` columns; a node
    a configuration does not use contributes nothing, which is itself informative to the trees.
    """
    tokens = [_config_tokens(c) for c in candidates]
    vocab = sorted(set().union(*tokens))
    col = {t: i for i, t in enumerate(vocab)}
    out = np.zeros((len(candidates), len(vocab)), dtype=np.float32)
    for k, toks in enumerate(tokens):  # K configurations, each a handful of tokens
        out[k, [col[t] for t in toks]] = 1.0
    return out, vocab


def _config_tokens(config: dict) -> set[str]:
    toks: set[str] = set()
    for node, setting in (config.get("nodes") or {}).items():
        calls = setting if isinstance(setting, list) else [setting]
        for i, call in enumerate(calls):
            name = f"{node}[{i}]" if isinstance(setting, list) else node
            toks |= {f"{name}.{key}={call.get(key)}" for key in ("model", "budget")}
    toks |= {f"knob.{k}={v}" for k, v in (config.get("knobs") or {}).items()}
    return toks
