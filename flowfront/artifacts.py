"""What every file flowfront writes for later shares: atomic writes and the package provenance.

Profiles, frontiers, router artifacts, outcome matrices, eval results, model-card drafts and
recordings are all written through :func:`write_atomic`, so a reader (a serving process, a
resumed run) never sees a half-written file and a crash leaves the previous version in place.
Their schemas and validate-before-use loaders stay with each artifact (they differ in what they
check); what they record about the software that made them is :func:`package_versions`.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable
from pathlib import Path

__all__ = ["package_versions", "write_atomic"]

_PROVENANCE_PACKAGES = ("flowfront", "numpy", "optuna", "litellm", "lightgbm")


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> Path:
    """Write ``data`` to ``path`` via a temporary file beside it and a rename.

    ``durable`` also fsyncs the file before the rename, so after a power cut the path holds the
    old or the new content, never a torn one (the cost is one fsync per artifact).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        with tmp.open("wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left behind when the write or the rename failed
    return path


def package_versions(names: Iterable[str] = _PROVENANCE_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages an artifact's content depends on (missing ones left out)."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out
