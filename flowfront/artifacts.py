"""What every file flowfront writes for later shares: atomic writes, validated reads, provenance.

Profiles, frontiers, router artifacts, outcome matrices, eval results, model-card drafts and
recordings are all written through :func:`write_atomic`, so a reader (a serving process, a
resumed run) never sees a half-written file and a crash leaves the previous version in place.
The JSON artifacts (profiles, frontier, ``router.json``) are read by :func:`read_json_artifact`:
kind, schema version and (where the artifact carries one) checksum are checked and the schema
validated before anything uses the content. What they record about the software that made them
is :func:`package_versions`.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from flowfront.errors import FlowfrontError

__all__ = ["package_versions", "read_json_artifact", "write_atomic"]

M = TypeVar("M", bound=BaseModel)

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


def read_json_artifact(path: Path, model: type[M], *, kind: str, schema_version: int, error: type[FlowfrontError],
                       hint: str, checksum: Callable[[dict[str, Any]], str] | None = None) -> M:
    """Read ``path`` as a ``kind`` artifact: every failure is one ``error`` naming the file and the fix.

    ``checksum(data)`` recomputes the digest the writer stored under ``"checksum"``; a mismatch
    means the file was edited or damaged after it was written.
    """
    path = Path(path)
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise error(f"{path}: not found", hint=hint) from None
    except orjson.JSONDecodeError as exc:
        raise error(f"{path}: corrupt {kind} file ({exc})", hint=hint) from None
    if not isinstance(data, dict) or data.get("kind") != kind:
        raise error(f"{path}: not a {kind} artifact", hint=hint)
    if data.get("schema_version") != schema_version:
        raise error(f"{path}: {kind} schema version {data.get('schema_version')} is not supported "
                    f"(this flowfront reads {schema_version})", hint=hint)
    if checksum is not None:
        if data.get("checksum") != checksum(data):
            raise error(f"{path}: checksum mismatch: the {kind} file was edited or damaged after it was written",
                        hint=hint)
        data = {k: v for k, v in data.items() if k != "checksum"}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise error(f"{path}: invalid {kind} at `{where}`: {err['msg']}", hint=hint) from None
