"""The ``static`` embedding variant: MiniLM distilled into one vector per vocabulary token.

Each of the tokenizer's 30,522 tokens is run once through the int8 MiniLM encoder (as
``[CLS] token [SEP]``, mean-pooled), which takes ~7 s on two cores and is cached beside the
ONNX exports. A query's vector is then the mean of its tokens' vectors (the last
``max_seq_length`` tokens with ``truncation="tail"``): tokenising and averaging cost ~0.1 ms
per query instead of a transformer forward pass (~10 ms for 128 tokens on one core), and the
serving process needs only ``tokenizers`` and numpy, not onnxruntime or torch. This is the
idea of Model2Vec (distilling a sentence transformer into static token vectors) without its
PCA and frequency weighting.

It routes as well as the full encoder on the train splits (3 seeded 80/20 folds, paired per
query: +0.001 ± 0.001 expected utility on ``qa-cascade``, −0.001 ± 0.002 on ``model-route``;
docs/router.md), because what the router learns from the text is mostly which task a query
belongs to, and the words say that.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flowfront.artifacts import write_atomic
from flowfront.router.onnx_embed import (
    EXPORT_REVISION,
    OnnxEncoder,
    default_threads,
    ensure_export,
    export_lock,
    require_onnx_packages,
)

__all__ = ["STATIC_REVISION", "StaticEncoder", "ensure_static", "load_static_encoder"]

# Bump when the distillation recipe changes, so old token tables are not read with a new meaning.
STATIC_REVISION = 1
_DISTIL_BATCH = 2048
_DISTIL_SEQ = 128  # the int8 export the tokens run through (its axes are dynamic; 3 tokens are used)


def static_path(export_dir: Path, package_version: str) -> Path:
    raw = f"{package_version}|static|rev{STATIC_REVISION}|onnx-rev{EXPORT_REVISION}"
    return export_dir / f"minilm-static-{hashlib.sha256(raw.encode()).hexdigest()[:16]}.npy"


def distil(encoder: OnnxEncoder) -> np.ndarray:
    """(vocabulary, dim) float32: every token's mean-pooled output as ``[CLS] token [SEP]``."""
    tok = encoder.tokenizer
    size, cls, sep = tok.get_vocab_size(), tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    table: np.ndarray | None = None
    for start in range(0, size, _DISTIL_BATCH):
        ids = np.arange(start, min(size, start + _DISTIL_BATCH), dtype=np.int64)
        x = np.stack([np.full_like(ids, cls), ids, np.full_like(ids, sep)], axis=1)
        (out,) = encoder.session.run(None, {"input_ids": x, "attention_mask": np.ones_like(x)})
        if table is None:
            table = np.empty((size, out.shape[1]), dtype=np.float32)
        table[ids] = out
    assert table is not None  # a tokenizer has at least one token
    return table


def ensure_static(
    model_dir: Path, export_dir: Path, *, package_version: str, num_threads: int | None = None
) -> Path:
    """Path of the token table, distilling it (from the int8 export, made first if needed) on first use."""
    target = static_path(export_dir, package_version)
    if target.is_file():
        return target
    require_onnx_packages("static")  # to distil it; serving from the table needs neither
    int8 = ensure_export(model_dir, export_dir, package_version=package_version, variant="onnx-int8",
                         max_seq_length=_DISTIL_SEQ)
    with export_lock(export_dir):
        if target.is_file():  # another process finished it while we waited
            return target
        encoder = OnnxEncoder(
            int8, model_dir, max_seq_length=_DISTIL_SEQ, num_threads=num_threads or default_threads()
        )
        buffer = io.BytesIO()
        np.save(buffer, distil(encoder), allow_pickle=False)
        write_atomic(target, buffer.getvalue())  # other workers never load half a table
    return target


class StaticEncoder:
    """texts -> un-normalised mean of their tokens' distilled vectors, float32 ``(n, dim)``."""

    def __init__(
        self, table_path: Path, model_dir: Path, *, max_seq_length: int, truncation: str = "tail"
    ) -> None:
        from tokenizers import Tokenizer

        self.table = np.load(table_path, allow_pickle=False)
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(
            max_length=max_seq_length, direction="left" if truncation == "tail" else "right"
        )

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
        out = np.zeros((len(encodings), self.table.shape[1]), dtype=np.float32)
        full = lengths > 0  # an empty text has no tokens: its vector stays zero
        if full.any():
            ids = np.concatenate([e.ids for e, n in zip(encodings, lengths, strict=True) if n])
            starts = np.concatenate([[0], np.cumsum(lengths[full])[:-1]])
            out[full] = np.add.reduceat(self.table[ids], starts, axis=0) / lengths[full, None]
        return out


def load_static_encoder(model_dir: Path, *, export_dir: Path, package_version: str, max_seq_length: int,
                        truncation: str, num_threads: int | None = None) -> StaticEncoder:
    path = ensure_static(model_dir, export_dir, package_version=package_version, num_threads=num_threads)
    return StaticEncoder(path, model_dir, max_seq_length=max_seq_length, truncation=truncation)
