"""What every file flowfront writes for later shares: one :class:`Artifact` base, atomic writes,
validated reads, provenance.

The five artifacts — profiles, frontier, router (``router.json``), outcome matrix (its header,
inside the ``.npz``) and eval results — are :class:`Artifact` subclasses: a ``kind``, a
``schema_version`` and a :class:`Provenance` naming the workflow and the content hash of the
inputs they were made from. ``save`` writes through :func:`write_atomic` with a checksum, so a
reader (a serving process, a resumed run) never sees a half-written file, a crash leaves the
previous version in place and an edited file is refused; ``load`` checks kind, schema version,
checksum and schema on a copy before anything uses the content, and, when asked, that the
provenance matches what the caller has now. Recordings and card drafts use :func:`write_atomic`
alone (they are line-oriented or human-edited).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flowfront.errors import FlowfrontError, first_invalid

__all__ = ["Artifact", "Provenance", "checksum", "package_versions", "write_atomic"]

A = TypeVar("A", bound="Artifact")

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


class Provenance(BaseModel):
    """Where an artifact came from.

    ``data_hash`` is the content hash of its inputs: the data file for profiles, the profiles for
    a frontier, the outcome matrix's candidate set for a router and for the matrix itself, the
    frontier for eval results. ``environment`` holds what varies by machine and run (git commit,
    platform); like ``packages`` and ``created_at`` it is outside every content hash.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow_hash: str
    data_hash: str
    packages: dict[str, str] = Field(default_factory=package_versions)
    created_at: float = Field(default_factory=time.time)
    environment: dict[str, Any] = Field(default_factory=dict)


def checksum(data: dict[str, Any]) -> str:
    """The digest ``encode`` stores under ``"checksum"``: of every other key, sorted."""
    body = {k: v for k, v in data.items() if k != "checksum"}
    return hashlib.sha256(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    ).hexdigest()


class Artifact(BaseModel):
    """Base of the artifacts: subclasses fix ``kind`` and ``schema_version`` as defaults and set
    ``ERROR`` (the exception a bad file raises) and ``REBUILD`` (the command that makes it again)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ERROR: ClassVar[type[FlowfrontError]] = FlowfrontError
    REBUILD: ClassVar[str] = "rebuild it"
    VOLATILE: ClassVar[frozenset[str]] = frozenset()  # fields outside the content hash (timings)

    kind: str
    schema_version: int
    provenance: Provenance

    @classmethod
    def expected(cls) -> tuple[str, int]:
        """The (kind, schema version) this class reads."""
        return cls.model_fields["kind"].default, cls.model_fields["schema_version"].default

    def content_hash(self) -> str:
        """Of what the artifact says, not when, where or how fast it was made: identical inputs give
        identical hashes, so remaking them never invalidates what was built on the result."""
        exclude: dict[str, Any] = {name: True for name in self.VOLATILE}
        exclude["provenance"] = {"packages": True, "created_at": True, "environment": True}
        payload = self.model_dump(mode="json", exclude=exclude)
        return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]

    def encode(self) -> bytes:
        """Indented JSON with a checksum over the content."""
        data = self.model_dump(mode="json")
        return orjson.dumps({**data, "checksum": checksum(data)},
                            option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)

    def save(self, path: Path) -> Path:
        """Atomically (beside, fsync, rename)."""
        return write_atomic(Path(path), self.encode())

    @classmethod
    def decode(cls: type[A], raw: bytes, where: Path | str) -> A:
        """Parse and validate ``raw``; every failure is one ``ERROR`` naming ``where`` and the fix."""
        kind, version = cls.expected()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise cls.ERROR(f"{where}: corrupt {kind} file ({exc})", hint=cls.REBUILD) from None
        if not isinstance(data, dict) or data.get("kind") != kind:
            raise cls.ERROR(f"{where}: not a {kind} artifact", hint=cls.REBUILD)
        if data.get("schema_version") != version:
            raise cls.ERROR(f"{where}: {kind} schema version {data.get('schema_version')} is not supported "
                            f"(this flowfront reads {version})", hint=cls.REBUILD)
        if data.get("checksum") != checksum(data):
            raise cls.ERROR(f"{where}: checksum mismatch: the {kind} file was edited or damaged after it "
                            "was written", hint=cls.REBUILD)
        try:
            return cls.model_validate({k: v for k, v in data.items() if k != "checksum"})
        except ValidationError as exc:
            at, why = first_invalid(exc, kind)
            raise cls.ERROR(f"{where}: invalid {kind} at `{at}`: {why}", hint=cls.REBUILD) from None

    @classmethod
    def load(cls: type[A], path: Path, *, expect_workflow_hash: str | None = None,
             expect_inputs_hash: str | None = None) -> A:
        """Read ``path``; with ``expect_*``, also refuse an artifact made for another workflow or
        from other inputs. ``expect_inputs_hash`` is the one name every artifact uses for the hash
        of what it was made from (its provenance's ``data_hash``: the data behind profiles, the
        profiles behind a frontier, the frontier behind a router or an outcome matrix)."""
        path = Path(path)
        kind = cls.expected()[0]
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise cls.ERROR(f"{path}: not found", hint=cls.REBUILD) from None
        except OSError as exc:
            raise cls.ERROR(
                f"{path}: cannot read the {kind} file ({exc.strerror})", hint=cls.REBUILD
            ) from None
        artifact = cls.decode(raw, path)
        artifact.check(path, expect_workflow_hash=expect_workflow_hash, expect_inputs_hash=expect_inputs_hash)
        return artifact

    def check(self, where: Path | str, *, expect_workflow_hash: str | None = None,
              expect_inputs_hash: str | None = None) -> None:
        """Refuse an artifact whose provenance is not what the caller has now."""
        p, kind = self.provenance, self.expected()[0]
        if expect_workflow_hash is not None and p.workflow_hash != expect_workflow_hash:
            raise self.ERROR(f"{where}: this {kind} was made for another version of the workflow "
                             f"(hash {p.workflow_hash}, current {expect_workflow_hash})", hint=self.REBUILD)
        if expect_inputs_hash is not None and p.data_hash != expect_inputs_hash:
            raise self.ERROR(f"{where}: this {kind} was made from other inputs "
                             f"(hash {p.data_hash}, current {expect_inputs_hash})", hint=self.REBUILD)


def write_npz(path: Path, header: Artifact, arrays: dict[str, Any]) -> Path:
    """Arrays and the artifact that describes them in one compressed ``.npz``, atomically; no pickle."""
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.frombuffer(header.encode(), dtype=np.uint8), **arrays)
    return write_atomic(path, buffer.getvalue())


def read_npz(path: Path, header_cls: type[A], names: Iterable[str], *, expect_workflow_hash: str | None,
             expect_inputs_hash: str | None) -> tuple[A, dict[str, Any]]:
    """The header (checked like any artifact) and the named arrays of a :func:`write_npz` file."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            raw = data["meta"].tobytes()
            arrays = {k: data[k] for k in names}
    except (OSError, KeyError, ValueError) as exc:
        kind = header_cls.model_fields["kind"].default
        raise header_cls.ERROR(f"{path}: not a readable {kind} file ({exc})",
                               hint=header_cls.REBUILD) from None
    header = header_cls.decode(raw, path)
    header.check(path, expect_workflow_hash=expect_workflow_hash, expect_inputs_hash=expect_inputs_hash)
    return header, arrays

