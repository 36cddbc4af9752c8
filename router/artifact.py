"""The router artifact: ``router.json`` + LightGBM text models + a float16 reference set.

Layout of a router folder::

    router.json               schema version, provenance, design, calibration, OOD threshold, metrics
    reference.npy             float16 (n, embedding_dim) train embeddings for the OOD check (no pickle)
    models/<name>.txt         one LightGBM text model per booster, sha256 recorded in router.json

``load_router`` validates the JSON and every referenced file (existence, sha256, parse) before it
builds the router, and never imports torch. Every failure is a :class:`RoutingError` whose hint
is to re-run ``flowfront train``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from compile.artifact import package_versions
from flowfront.errors import RoutingError
from router.features import FeatureConfig
from router.model import LightGBMRouter

__all__ = ["ROUTER_SCHEMA", "RouterArtifact", "load_router", "save_router"]

ROUTER_SCHEMA = 1
_RETRAIN = "re-run `flowfront train` for this frontier"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelFile(_Strict):
    """A booster's text file, or a constant that stands in for it."""

    path: str | None = None
    sha256: str | None = None
    constant: float | None = None


class RouterArtifact(_Strict):
    """Schema of ``router.json``."""

    schema_version: int = ROUTER_SCHEMA
    kind: Literal["router"] = "router"
    strategy: str
    design: Literal["per-candidate", "conditioned"]
    frontier_hash: str
    outcomes_hash: str
    feature_config: FeatureConfig
    packages: dict[str, str]
    params: dict[str, Any]
    candidate_ids: list[str] = Field(min_length=1)
    n_features: int = Field(ge=1)
    candidate_features: list[list[float]]
    static: dict[str, list[float]]
    calibration: dict[str, Any]
    ood_threshold: float
    reference_file: str
    reference_sha256: str
    success_models: list[ModelFile] = Field(min_length=1)
    latency_models: list[ModelFile]
    cost_models: list[ModelFile]
    latency_mean: list[float]
    cost_mean: list[float]
    regressors: dict[str, list[dict[str, Any]]]
    fit_seconds: float
    validation_metrics: dict[str, Any]
    metrics: dict[str, Any]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_models(models: list[Any], prefix: str, folder: Path) -> list[ModelFile]:
    out = []
    for k, m in enumerate(models):
        if m is None or isinstance(m, float):
            out.append(ModelFile(constant=m))
            continue
        text = m.model_to_string().encode()
        rel = f"models/{prefix}_{k:04d}.txt"
        (folder / rel).write_bytes(text)
        out.append(ModelFile(path=rel, sha256=_sha256(text)))
    return out


def save_router(
    router: LightGBMRouter,
    folder: Path,
    *,
    frontier_hash: str,
    feature_config: FeatureConfig,
    metrics: dict[str, Any],
    strategy: str = "frontier",
) -> Path:
    """Write the router folder; a complete new folder replaces the old one only at the end."""
    router._check_fitted()
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "models").mkdir(parents=True)
    ref = np.ascontiguousarray(router.reference_embeddings_, dtype=np.float16)
    np.save(tmp / "reference.npy", ref, allow_pickle=False)
    artifact = RouterArtifact(
        strategy=strategy, design=router.design_, frontier_hash=frontier_hash, outcomes_hash=router.source_hash_,
        feature_config=feature_config, packages=package_versions(), params=router.get_params(),
        candidate_ids=router.candidate_ids_, n_features=router.n_features_,
        candidate_features=router.candidate_features_.tolist(),
        static={"accuracy": router.static_accuracy_.tolist(), "latency_s": router.static_latency_s_.tolist(),
                "cost_usd": router.static_cost_usd_.tolist()},
        calibration=router.calibration_, ood_threshold=router.ood_threshold_, reference_file="reference.npy",
        reference_sha256=_sha256((tmp / "reference.npy").read_bytes()),
        success_models=_write_models(router.success_models_, "success", tmp),
        latency_models=_write_models(router.latency_models_, "latency", tmp),
        cost_models=_write_models(router.cost_models_, "cost", tmp),
        latency_mean=router.latency_mean_.tolist(), cost_mean=router.cost_mean_.tolist(),
        regressors=router.regressor_meta_, fit_seconds=router.fit_seconds_,
        validation_metrics=router.validation_metrics_, metrics=metrics,
    )
    (tmp / "router.json").write_bytes(orjson.dumps(artifact.model_dump(mode="json"), option=orjson.OPT_INDENT_2))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.replace(folder)
    return folder


def read_artifact(folder: Path) -> RouterArtifact:
    """Parse and validate ``router.json`` alone (no model files)."""
    path = Path(folder) / "router.json"
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise RoutingError(f"{path}: no router artifact here", hint=_RETRAIN) from None
    except orjson.JSONDecodeError as exc:
        raise RoutingError(f"{path}: corrupt router.json ({exc})", hint=_RETRAIN) from None
    if not isinstance(data, dict) or data.get("kind") != "router":
        raise RoutingError(f"{path}: not a router artifact", hint=_RETRAIN)
    if data.get("schema_version") != ROUTER_SCHEMA:
        raise RoutingError(f"{path}: router schema version {data.get('schema_version')} is not supported "
                           f"(this flowfront reads {ROUTER_SCHEMA})", hint=_RETRAIN)
    try:
        return RouterArtifact.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise RoutingError(f"{path}: invalid router artifact at `{where}`: {err['msg']}", hint=_RETRAIN) from None


def _read_checked(folder: Path, rel: str, sha256: str | None) -> bytes:
    path = folder / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RoutingError(f"{path}: model file referenced by router.json is missing", hint=_RETRAIN) from None
    if sha256 is not None and _sha256(data) != sha256:
        raise RoutingError(f"{path}: model file is corrupt (checksum mismatch)", hint=_RETRAIN)
    return data


def _load_models(folder: Path, files: list[ModelFile], *, constant_none: bool) -> list[Any]:
    import lightgbm as lgb

    out: list[Any] = []
    for f in files:
        if f.path is None:
            out.append(None if constant_none else float(f.constant if f.constant is not None else 0.0))
            continue
        text = _read_checked(folder, f.path, f.sha256).decode("utf-8", "replace")
        try:
            out.append(lgb.Booster(model_str=text))
        except lgb.basic.LightGBMError as exc:
            raise RoutingError(f"{folder / f.path}: not a readable LightGBM model ({exc})", hint=_RETRAIN) from None
    return out


def load_router(folder: Path, *, expect_frontier_hash: str | None) -> LightGBMRouter:
    """Validate the folder completely, then build the router (no torch import)."""
    folder = Path(folder)
    art = read_artifact(folder)
    if expect_frontier_hash is not None and art.frontier_hash != expect_frontier_hash:
        raise RoutingError(f"{folder}: router was trained for frontier {art.frontier_hash}, "
                           f"but the current frontier is {expect_frontier_hash}", hint=_RETRAIN)
    ref_bytes = _read_checked(folder, art.reference_file, art.reference_sha256)
    del ref_bytes  # checksum verified; np.load reads the same file without pickle
    reference = np.load(folder / art.reference_file, allow_pickle=False)
    state = _validated_state(folder, art, reference)
    return LightGBMRouter.from_state(state)


def _validated_state(folder: Path, art: RouterArtifact, reference: np.ndarray) -> dict[str, Any]:
    k = len(art.candidate_ids)
    sizes = {"success_models": len(art.success_models), "latency_models": len(art.latency_models),
             "cost_models": len(art.cost_models), "latency_mean": len(art.latency_mean),
             "cost_mean": len(art.cost_mean), "candidate_features": len(art.candidate_features)}
    expected_success = 1 if art.design == "conditioned" else k
    bad = {n: v for n, v in sizes.items() if v != (expected_success if n == "success_models" else k)}
    if bad or reference.ndim != 2 or reference.shape[1] != art.params.get("embedding_dim"):
        raise RoutingError(f"{folder}/router.json: inconsistent sizes for {k} candidates "
                           f"({bad or f'reference {reference.shape}'})", hint=_RETRAIN)
    return {
        "params": art.params, "design": art.design, "candidate_ids": art.candidate_ids,
        "n_features": art.n_features, "outcomes_hash": art.outcomes_hash,
        "candidate_features": np.asarray(art.candidate_features, dtype=np.float32).reshape(k, -1),
        "static": art.static, "calibration": art.calibration, "ood_threshold": art.ood_threshold,
        "reference": reference,
        "success_models": _load_models(folder, art.success_models, constant_none=False),
        "latency_models": _load_models(folder, art.latency_models, constant_none=True),
        "cost_models": _load_models(folder, art.cost_models, constant_none=True),
        "latency_mean": np.asarray(art.latency_mean), "cost_mean": np.asarray(art.cost_mean),
        "regressors": art.regressors, "fit_seconds": art.fit_seconds, "validation_metrics": art.validation_metrics,
    }
