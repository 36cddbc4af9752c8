"""The checkpoint routers inside a router folder: ``checkpoints.json`` beside LightGBM text files.

``router.json`` names ``checkpoints.json`` with its sha256 (``RouterArtifact.checkpoints_file``),
and ``checkpoints.json`` names each booster file with its own, so a router folder is validated as
a whole before it serves. Every checkpoint the fit looked at is listed with the cross-validated
record that decided whether it is used; only used ones carry boosters. No pickle.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from flowfront.errors import RoutingError
from flowfront.router.checkpoint_router import CheckpointRouter
from flowfront.router.model import LightGBMRouter
from flowfront.router.progressive import ProgressivePolicy, _Point

__all__ = ["load_checkpoints", "write_checkpoints"]

_RETRAIN = "re-run `flowfront train` for this frontier"
FILE = "checkpoints.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Booster(_Strict):
    path: str
    sha256: str


class _PointFile(_Strict):
    adopted: bool
    record: dict[str, Any]
    params: dict[str, Any] = {}
    n_candidates: int = 0
    success: _Booster | None = None
    latency: _Booster | None = None
    cost: _Booster | None = None


class CheckpointsFile(_Strict):
    kind: Literal["checkpoint-routers"] = "checkpoint-routers"
    schema_version: Literal[1] = 1
    params: dict[str, Any]
    points: dict[str, _PointFile]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_checkpoints(policy: ProgressivePolicy, folder: Path) -> tuple[str, str]:
    """Write the policy's checkpoint routers into ``folder``; returns (file name, sha256)."""
    points: dict[str, _PointFile] = {}
    for i, (cid, point) in enumerate(policy.points_.items()):
        boosters: dict[str, _Booster | None] = {}
        router = point.router if point.adopted else None
        for name in ("success", "latency", "cost"):
            model = None if router is None else getattr(router, f"{name}_")
            if model is None:
                boosters[name] = None
                continue
            text = model.model_to_string().encode()
            rel = f"models/checkpoint{i:02d}_{name}.txt"
            (folder / rel).write_bytes(text)
            boosters[name] = _Booster(path=rel, sha256=_sha(text))
        points[cid] = _PointFile(
            adopted=router is not None,
            record=point.record,
            params={} if router is None else router.get_params(),
            n_candidates=0 if router is None else router.n_candidates_,
            **boosters,
        )
    payload = CheckpointsFile(params=policy.get_params(), points=points).model_dump_json(indent=1).encode()
    (folder / FILE).write_bytes(payload)
    return FILE, _sha(payload)


def load_checkpoints(folder: Path, rel: str, sha256: str, upfront: LightGBMRouter) -> ProgressivePolicy:
    """The progressive policy of a router folder: its upfront router and checkpoint routers,
    every file checked (existence, sha256, parse) first."""
    import lightgbm as lgb

    raw = _read(folder, rel, sha256)
    try:
        spec = CheckpointsFile.model_validate_json(raw)
    except ValidationError as exc:
        raise RoutingError(
            f"{folder / rel}: invalid checkpoint routers ({exc.errors()[0]['msg']})", hint=_RETRAIN
        ) from None
    policy = ProgressivePolicy(**spec.params)
    policy.upfront_ = upfront
    policy.points_ = {}
    for cid, p in spec.points.items():
        router = None
        if p.adopted:
            router = CheckpointRouter(**p.params)
            router.n_candidates_ = p.n_candidates
            if p.n_candidates != len(upfront.candidate_ids_):
                raise RoutingError(
                    f"{folder / rel}: checkpoint {cid} has {p.n_candidates} candidates, the "
                    f"router {len(upfront.candidate_ids_)}",
                    hint=_RETRAIN,
                )
            for name in ("success", "latency", "cost"):
                f = getattr(p, name)
                model = None
                if f is not None:
                    try:
                        model = lgb.Booster(model_str=_read(folder, f.path, f.sha256).decode())
                    except lgb.basic.LightGBMError as exc:
                        raise RoutingError(
                            f"{folder / f.path}: not a LightGBM model ({exc})", hint=_RETRAIN
                        ) from None
                setattr(router, f"{name}_", model)
            router.trees_ = {
                n: 0 if getattr(router, f"{n}_") is None else getattr(router, f"{n}_").current_iteration()
                for n in ("success", "latency", "cost")
            }
        policy.points_[cid] = _Point(router, p.adopted, dict(p.record))
    return policy


def _read(folder: Path, rel: str, sha256: str) -> bytes:
    path = folder / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RoutingError(f"{path}: file referenced by the router is missing", hint=_RETRAIN) from None
    if _sha(data) != sha256:
        raise RoutingError(f"{path}: file is corrupt (checksum mismatch)", hint=_RETRAIN)
    return data
