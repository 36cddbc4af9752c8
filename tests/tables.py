"""A seeded synthetic outcome table (three fictional models, three topics) for the tests of
``run --outcomes`` and the wheel: each model wins somewhere, so a router has something to learn."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

TOPICS = {
    "arithmetic": "What is {a} plus {b}, multiplied by {c}?",
    "geography": "Which river flows through the capital of country number {a} on list {b}?",
    "poetry": "Write a line of verse about {a} autumn leaves and {b} grey herons.",
}
# P(correct) per model and topic: each model wins somewhere, so a router has something to learn.
SKILL = {
    "acme/small-fast": {"arithmetic": 0.85, "geography": 0.15, "poetry": 0.40},
    "acme/mid": {"arithmetic": 0.40, "geography": 0.80, "poetry": 0.45},
    "acme/large-slow": {"arithmetic": 0.70, "geography": 0.70, "poetry": 0.90},
}
LATENCY = {"acme/small-fast": 0.4, "acme/mid": 1.1, "acme/large-slow": 3.5}
COST = {"acme/small-fast": 0.0001, "acme/mid": 0.0006, "acme/large-slow": 0.004}


def make_table(path: Path, n_queries: int = 210, seed: int = 7) -> Path:
    """A seeded synthetic outcome table without a split column."""
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["query_id", "query", "task", "model", "score", "response", "cost_usd", "latency_s"])
        for i in range(n_queries):
            topic = topics[i % len(topics)]
            a, b, c = rng.integers(2, 99, size=3)
            text = TOPICS[topic].format(a=a, b=b, c=c)
            for model, skill in SKILL.items():
                score = int(rng.random() < skill[topic])
                latency = LATENCY[model] * (1 + 0.2 * rng.random())
                writer.writerow(
                    [f"q{i}", text, topic, model, score, f"answer {i} by {model}", COST[model], latency]
                )
    return path
