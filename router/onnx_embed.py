"""Embedding backends for :mod:`router.features`: ONNX export, int8 quantisation, onnxruntime
inference, and the sentence-transformers reference path they are checked against.

On a 2-core box a 256-token query costs ~50 ms through plain sentence-transformers, ~40 ms
through the fp32 export on onnxruntime and ~20 ms through its int8 version (bench/router_embed.py);
the serving process then never imports torch or transformers once the export exists.
The exported graph is the transformer plus mean pooling and returns *un-normalised* sentence
vectors (shape ``(batch, 384)``), so the embedding cache holds one form for both
``normalize`` settings; normalisation happens in numpy afterwards.

Exports live in a cache folder (never the repository) named by a hash of the model package's
version, the variant, the maximum sequence length and :data:`EXPORT_REVISION`, so each is built
once per machine. Heavy libraries (torch, transformers, onnx, onnxruntime) are imported inside
the functions that need them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flowfront.errors import DataError

# Bump when the exported graph or the quantisation recipe changes: old cached files are then
# ignored instead of being loaded with a different meaning.
EXPORT_REVISION = 1
ONNX_VARIANTS = ("onnx", "onnx-int8")
_OPSET = 17


def export_key(package_version: str, variant: str, max_seq_length: int) -> str:
    """Short hash naming one cached export."""
    raw = f"{package_version}|{variant}|{max_seq_length}|rev{EXPORT_REVISION}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def default_export_dir() -> Path:
    """Per-user folder for exports when the caller gives no cache directory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flowfront" / "onnx"


@contextlib.contextmanager
def export_lock(folder: Path) -> Iterator[None]:
    """Serialise exports across processes so a model is exported once, not once per worker."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".export.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _atomic_write(final: Path) -> Iterator[Path]:
    """Yield a temp path beside ``final``; renamed onto it on success, removed on failure.

    Readers (other workers) therefore never open half a file.
    """
    tmp = final.with_name(f"{final.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantiser logs advice ("run pre-processing") on the root logger; the symbolic shape
    inference that pre-processing needs fails on this graph, so the advice is only noise."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def _pooled_module(model_dir: Path) -> Any:
    """The Hugging Face encoder wrapped with masked mean pooling, ready for tracing."""
    import torch
    from transformers import AutoModel

    # Eager attention traces to plain MatMul/Softmax, which both the exporter and the int8
    # quantiser handle; the fused SDPA kernel does not trace cleanly everywhere.
    encoder = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()

    class MeanPooled(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    return MeanPooled(encoder).eval()


def export_fp32(model_dir: Path, target: Path) -> Path:
    """Trace the encoder + mean pooling to ONNX with dynamic batch and sequence axes."""
    import torch

    module = _pooled_module(model_dir)
    dummy = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    # The dynamo exporter in torch 2.13 needs onnxscript; the TorchScript tracer needs nothing
    # extra and gives a graph onnxruntime optimises well. Its warnings are about branches that
    # are constant for an encoder without a KV cache.
    with _atomic_write(target) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            dummy,
            str(tmp),
            input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "sentence_embedding": {0: "batch"},
            },
            opset_version=_OPSET,
            dynamo=False,
        )
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the MatMul weights, per output channel.

    Per-tensor scales (the default) lose too much: cosine to the fp32 vectors drops to ~0.86 on
    long queries. Per-channel MatMul-only keeps it at ~0.99 and is as fast.
    """
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _atomic_write(target) as tmp, _quiet_root_logger():
        quantize_dynamic(
            str(source),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            extra_options={"DefaultTensorType": TensorProto.FLOAT},
        )
    return target


def _export_path(export_dir: Path, package_version: str, variant: str, max_seq_length: int) -> Path:
    return export_dir / f"minilm-{variant}-{export_key(package_version, variant, max_seq_length)}.onnx"


def ensure_export(
    model_dir: Path, export_dir: Path, *, package_version: str, variant: str, max_seq_length: int
) -> Path:
    """Path of the ONNX file for ``variant``, exporting (and quantising) it on first use."""
    if variant not in ONNX_VARIANTS:
        raise DataError(f"no ONNX export for variant {variant!r}", hint=f"use one of {ONNX_VARIANTS}")
    target = _export_path(export_dir, package_version, variant, max_seq_length)
    if target.is_file():
        return target
    with export_lock(export_dir):
        if target.is_file():  # another process finished it while we waited
            return target
        fp32 = _export_path(export_dir, package_version, "onnx", max_seq_length)
        if not fp32.is_file():
            export_fp32(model_dir, fp32)
        return fp32 if variant == "onnx" else quantize_int8(fp32, target)


def default_threads() -> int:
    """Intra-op threads: the cores this process may use, capped at 4.

    Beyond 4 threads a 6-layer, 384-wide encoder gains nothing for single queries and only
    steals cores from the HTTP server and LightGBM running beside it.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


class OnnxEncoder:
    """Tokenise with the model's fast tokenizer and run the exported graph on onnxruntime."""

    def __init__(
        self,
        onnx_path: Path,
        model_dir: Path,
        *,
        max_seq_length: int,
        num_threads: int,
        truncation: str = "tail",
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships with fixed padding to 128 and truncation at 128; we want the
        # configured limit and padding only to the longest text of each batch.
        self.tokenizer.enable_truncation(
            max_length=max_seq_length, direction="left" if truncation == "tail" else "right"
        )
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning workers burn the cores the HTTP server and LightGBM share with us; turning
        # spinning off showed no clear latency loss on the 2-core box.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Un-normalised mean-pooled vectors, float32 ``(len(texts), dim)``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        (out,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.asarray(out, dtype=np.float32)


class TorchEncoder:
    """sentence-transformers on CPU, without its Normalize module (the cache keeps raw vectors)."""

    def __init__(self, model_dir: Path, *, max_seq_length: int, truncation: str = "tail") -> None:
        from sentence_transformers import SentenceTransformer

        full = SentenceTransformer(str(model_dir), device="cpu")
        modules = [m for m in full if type(m).__name__ != "Normalize"]
        self.model = SentenceTransformer(modules=modules, device="cpu")
        self.model.max_seq_length = max_seq_length
        self.model.tokenizer.truncation_side = "left" if truncation == "tail" else "right"

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """Un-normalised mean-pooled vectors, float32 ``(len(texts), dim)``."""
        vectors = self.model.encode(list(texts), batch_size=len(texts), show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


def require_onnx_packages(variant: str) -> None:
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise DataError(
            f"embedding variant {variant!r} needs {' and '.join(missing)}, which is not installed",
            hint=f"`pip install {' '.join(missing)}`, or set the router's feature variant to 'torch'",
        )


def load_encoder(
    model_dir: Path,
    *,
    variant: str,
    max_seq_length: int,
    package_version: str,
    export_dir: Path,
    num_threads: int | None = None,
    truncation: str = "tail",
) -> Callable[[Sequence[str]], np.ndarray]:
    """A callable texts -> un-normalised vectors for ``variant``, exporting ONNX files on first use."""
    if variant == "torch":
        return TorchEncoder(model_dir, max_seq_length=max_seq_length, truncation=truncation)
    require_onnx_packages(variant)
    path = ensure_export(
        model_dir, export_dir, package_version=package_version, variant=variant, max_seq_length=max_seq_length
    )
    threads = num_threads or default_threads()
    return OnnxEncoder(
        path, model_dir, max_seq_length=max_seq_length, num_threads=threads, truncation=truncation
    )
