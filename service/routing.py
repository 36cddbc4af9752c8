"""Per-query router estimates, cached and batched.

Three levels, cheapest first, all keyed by the sha256 of the query text:

* :class:`RouterFront` memoises the router's estimates per query (the router is fixed for a
  loaded state, so equal texts get equal estimates); a hit costs a hash and a dict lookup on the
  event loop, and selection still runs per request with the caller's preference.
* :class:`FeatureSource` keeps whole feature rows, so a query the memo lost (or a new router
  after a reload) skips the embedding model *and* the text statistics, whose regexes cost about
  a millisecond on a long few-shot prompt.
* the :class:`~router.features.Embedder`'s own caches, then the model.

Misses go through one :class:`~service.batcher.MicroBatcher` that runs feature extraction, the
router's boosters and its OOD check for all concurrent misses together in a worker thread.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Counter

from flowfront.router.base import Router
from flowfront.router.caches import LRUCache
from flowfront.router.features import Embedder, FeatureConfig, featurize
from flowfront.service.batcher import MicroBatcher

__all__ = ["FeatureSource", "RouterFront", "RouterRow", "text_key"]


@dataclass(frozen=True, slots=True)
class RouterRow:
    """The router's view of one query: per-candidate estimates (K,), the OOD flag and whether a
    task hint was used as its group."""

    accuracy: np.ndarray
    latency_s: np.ndarray
    cost_usd: np.ndarray
    ood: bool
    hinted: bool = False
    group: str | None = None


def text_key(text: str) -> bytes:
    """The cache key of a query text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class FeatureSource:
    """Router features with a row cache; counts where each query's features came from.

    ``lookups`` gets ``result="feature-cache"`` (row cache), ``"embedding-cache"`` (the embedder's
    LRU or disk cache had the vector) or ``"computed"`` (the model ran) per query.
    """

    def __init__(self, embedder: Embedder, config: FeatureConfig, *, lru_size: int, lookups: Counter) -> None:
        self.embedder = embedder
        self.config = config
        self.rows = LRUCache(lru_size)
        self.lookups = lookups
        self._lock = threading.Lock()  # one model run at a time: the counters below stay per batch

    def features(self, keys: list[bytes], texts: list[str]) -> np.ndarray:
        """(len(texts), F) float32 features, in order; ``keys`` are the texts' :func:`text_key`."""
        found = self.rows.get_many(keys)
        missing = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}  # duplicates once
        if missing:
            with self._lock:
                before = self.embedder.texts_embedded
                fresh = featurize(list(missing.values()), self.config, self.embedder)
                computed = self.embedder.texts_embedded - before
            new = dict(zip(missing, fresh, strict=True))
            self.rows.put_many(new)
            found.update(new)
            self.lookups.labels(result="computed").inc(computed)
            self.lookups.labels(result="embedding-cache").inc(len(missing) - computed)
        self.lookups.labels(result="feature-cache").inc(len(texts) - len(missing))
        return np.stack([found[k] for k in keys])


class RouterFront:
    """``await estimate(text)``: memoised router estimates, misses batched in a worker thread."""

    def __init__(self, source: FeatureSource, router: Router, pool: ThreadPoolExecutor, *, memo_size: int,
                 max_size: int, max_wait_s: float, on_batch: Any = None) -> None:
        self.source = source
        self.router = router
        self.memo = LRUCache(memo_size)
        self.lookups = source.lookups
        self.hint_groups = frozenset(router.hint_groups)
        self.batcher: MicroBatcher[tuple[bytes, str, str | None], RouterRow] = MicroBatcher(
            self._route_batch, pool, max_size=max_size, max_wait_s=max_wait_s, on_batch=on_batch)

    def start(self) -> None:
        self.batcher.start()

    async def aclose(self) -> None:
        await self.batcher.aclose()

    async def estimate(self, text: str, task: str | None = None) -> RouterRow:
        """The router's per-candidate estimates for one query, with the caller's task hint if any."""
        key = text_key(text)
        hint = task if task in self.hint_groups else None  # an unknown hint changes nothing: share the memo
        memo_key = _memo_key(key, hint)
        hit = self.memo.get_many((memo_key,))
        if hit:
            self.lookups.labels(result="memo").inc()
            return hit[memo_key]
        return await self.batcher.submit((key, text, hint))

    def _route_batch(self, items: list[tuple[bytes, str, str | None]]) -> list[RouterRow]:
        keys = [k for k, _, _ in items]
        X = self.source.features(keys, [t for _, t, _ in items])
        hints = [h for _, _, h in items]
        # fallback rows already carry the router's own fallback estimates
        pred = self.router.predict(X, hints=hints if any(h is not None for h in hints) else None)
        ood = pred.fallback if pred.fallback is not None else np.zeros(len(X), dtype=bool)
        used = pred.hinted if pred.hinted is not None else np.zeros(len(X), dtype=bool)
        groups = pred.groups
        rows = [RouterRow(pred.accuracy[i], pred.latency_s[i], pred.cost_usd[i], bool(ood[i]), bool(used[i]),
                          None if groups is None else str(groups[i])) for i in range(len(X))]
        self.memo.put_many({_memo_key(k, h): row for (k, _, h), row in zip(items, rows, strict=True)})
        return rows


def _memo_key(key: bytes, hint: str | None) -> bytes:
    """A text's memo key, or the same text's under a used hint (the digest has a fixed length, so
    digest + hint never equals another text's key)."""
    return key if hint is None else key + hint.encode("utf-8", "surrogatepass")
