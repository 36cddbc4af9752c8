"""The router artifact: ``router.json`` + LightGBM text models + a float16 reference set.

Layout of a router folder::

    router.json               an Artifact: schema version, provenance (workflow hash, the outcome
                              matrix's hash), design, query map, priors, calibration, OOD threshold,
                              metrics; checksummed
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
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field

from flowfront.artifacts import Artifact, Provenance, write_atomic
from flowfront.errors import RoutingError
from flowfront.router.features import FeatureConfig
from flowfront.router.model import LightGBMRouter
from flowfront.router.querymap import QueryMap

__all__ = [
    "KEEP_VERSIONS",
    "ROUTER_SCHEMA",
    "RouterArtifact",
    "load_progressive",
    "load_router",
    "rollback_router",
    "router_versions",
    "save_router",
]

ROUTER_SCHEMA = 3  # 2: query map + group priors; 3: provenance, checksum
_RETRAIN = "re-run `flowfront train` for this frontier"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelFile(_Strict):
    """A booster's text file, or a constant that stands in for it."""

    path: str | None = None
    sha256: str | None = None
    constant: float | None = None


class RouterArtifact(Artifact):
    """Schema of ``router.json``. ``provenance.data_hash`` is the hash of the outcome matrix's
    candidate set it learned from; ``frontier_hash`` is the frontier it serves."""

    ERROR = RoutingError
    REBUILD = _RETRAIN
    VOLATILE = frozenset({"fit_seconds"})
    kind: Literal["router"] = "router"
    schema_version: Literal[3] = ROUTER_SCHEMA
    strategy: str
    design: Literal["per-candidate", "conditioned", "prior"]
    frontier_hash: str
    feature_config: FeatureConfig
    params: dict[str, Any]
    candidate_ids: list[str] = Field(min_length=1)
    n_features: int = Field(ge=1)
    candidate_features: list[list[float]]
    static: dict[str, list[float]]
    query_map: dict[str, Any]
    priors: dict[str, list[list[float]]]
    calibration: dict[str, Any]
    ood_threshold: float
    reference_file: str
    reference_sha256: str
    success_models: list[ModelFile]  # none for the "prior" design; the size check is per design
    latency_model: ModelFile | None
    cost_model: ModelFile | None
    regressors: dict[str, dict[str, Any]]
    fit_seconds: float
    validation_metrics: dict[str, Any]
    metrics: dict[str, Any]
    checkpoints_file: ModelFile | None = None  # the checkpoint routers (router/checkpoint_artifact.py)


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


def _write_regressor(model: Any, name: str, folder: Path) -> ModelFile | None:
    return None if model is None else _write_models([model], name, folder)[0]


def save_router(
    router: LightGBMRouter,
    folder: Path,
    *,
    frontier_hash: str,
    workflow_hash: str,
    feature_config: FeatureConfig,
    metrics: dict[str, Any],
    strategy: str = "frontier",
    note: str = "trained",
    checkpoints: Any = None,
) -> Path:
    """Write the router folder; a complete new folder, validated by loading it, replaces the old
    one only at the end (a crash or a failed validation leaves the previous router serving)."""
    router._check_fitted()
    folder = Path(folder)
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "models").mkdir(parents=True)
    ref = np.ascontiguousarray(router.reference_embeddings_, dtype=np.float16)
    np.save(tmp / "reference.npy", ref, allow_pickle=False)
    points = None
    if checkpoints is not None:  # a ProgressivePolicy over this router
        from flowfront.router.checkpoint_artifact import write_checkpoints

        rel, digest = write_checkpoints(checkpoints, tmp)
        points = ModelFile(path=rel, sha256=digest)
    artifact = RouterArtifact(
        strategy=strategy, design=router.design_, frontier_hash=frontier_hash,
        provenance=Provenance(workflow_hash=workflow_hash, data_hash=router.source_hash_),
        feature_config=feature_config, params=router.get_params(),
        candidate_ids=router.candidate_ids_, n_features=router.n_features_,
        candidate_features=router.candidate_features_.tolist(),
        static={"accuracy": router.static_accuracy_.tolist(), "latency_s": router.static_latency_s_.tolist(),
                "cost_usd": router.static_cost_usd_.tolist()},
        query_map=router.query_map_.state(),
        priors={"accuracy": router.prior_accuracy_.tolist(), "latency_s": router.prior_latency_s_.tolist(),
                "cost_usd": router.prior_cost_usd_.tolist()},
        calibration=router.calibration_, ood_threshold=router.ood_threshold_, reference_file="reference.npy",
        reference_sha256=_sha256((tmp / "reference.npy").read_bytes()),
        success_models=_write_models(router.success_models_, "success", tmp),
        latency_model=_write_regressor(router.latency_model_, "latency", tmp),
        cost_model=_write_regressor(router.cost_model_, "cost", tmp),
        regressors=router.regressor_meta_, fit_seconds=router.fit_seconds_,
        validation_metrics=router.validation_metrics_, metrics=metrics, checkpoints_file=points,
    )
    payload = artifact.encode()
    (tmp / "router.json").write_bytes(payload)  # the folder as a whole is swapped in atomically
    try:
        load_progressive(tmp, load_router(tmp, expect_inputs_hash=frontier_hash))  # what goes live must load
    except RoutingError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _adopt(folder)
    _swap_in(tmp, folder, _sha256(payload)[:12])
    _record(folder, note)
    return folder


def _adopt(folder: Path) -> None:
    """Turn a plain router folder (a copy, an older layout) into a kept version behind the link, so
    the router it held stays one rollback away once a new one replaces it."""
    if not folder.is_dir() or folder.is_symlink() or not (folder / "router.json").is_file():
        return
    versioned = folder.with_name(f"{folder.name}.{_sha256((folder / 'router.json').read_bytes())[:12]}")
    if not versioned.exists():
        shutil.copytree(folder, versioned)
    link = folder.with_name(folder.name + f".link{os.getpid()}")
    link.unlink(missing_ok=True)
    os.symlink(versioned.name, link)
    if _exchange(link, folder):  # readers see the plain folder or the link, never nothing
        shutil.rmtree(link)
    else:
        link.unlink()  # _swap_in replaces the plain folder itself; the copy stays kept
    _record(folder, "adopted", versioned.name)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    import ctypes

    try:  # the process's own symbols: find_library would run ldconfig in a subprocess
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _swap_in(tmp: Path, folder: Path, digest: str) -> None:
    """Make ``folder`` the new version with no moment where it is missing or half written.

    Each version is a complete directory ``<folder>.<digest>``; ``folder`` is a symlink to the
    current one, replaced atomically (rename over the link). The previous version is kept, so a
    reader that resolved the old link mid-load still finds its files; older ones are removed.
    """
    for path in tmp.rglob("*"):
        if path.is_file():
            with path.open("rb") as fh:
                os.fsync(fh.fileno())
    versioned = folder.with_name(f"{folder.name}.{digest}")
    previous = folder.resolve() if folder.is_symlink() else None
    if versioned.exists() and versioned != previous:
        shutil.rmtree(versioned)
    if versioned == previous:
        shutil.rmtree(tmp)  # identical content is already current
    else:
        tmp.rename(versioned)
    link = folder.with_name(folder.name + f".link{os.getpid()}")
    link.unlink(missing_ok=True)
    os.symlink(versioned.name, link)
    if folder.exists() and not folder.is_symlink():  # a plain folder (older layout, or a copy)
        if _exchange(link, folder):  # atomically: `folder` is now the link, `link` the old folder
            shutil.rmtree(link)
        else:  # no renameat2 here: one short moment without a router, once per plain folder
            aside = folder.with_name(folder.name + f".old{os.getpid()}")
            folder.rename(aside)
            os.replace(link, folder)
            shutil.rmtree(aside)
    else:
        os.replace(link, folder)
    versions = [e["version"] for e in _history(folder)][-(KEEP_VERSIONS - 1):]
    keep = {versioned.name, previous.name if previous is not None else None, *versions}
    for old in folder.parent.glob(f"{folder.name}.*"):
        if (
            old.is_dir()
            and not old.is_symlink()
            and old.name not in keep
            and not old.name.startswith(f"{folder.name}.tmp")
        ):
            shutil.rmtree(old, ignore_errors=True)


KEEP_VERSIONS = 5  # router versions kept beside the current one's folder, for rollback


def _history_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".history.json")


def _history(folder: Path) -> list[dict[str, Any]]:
    """Versions that served, oldest first: ``{"version", "at", "note"}`` (a missing or unreadable
    file is an empty history: it only lists what rollback may return to)."""
    try:
        data = orjson.loads(_history_path(folder).read_bytes())
    except (OSError, ValueError):
        return []
    return [e for e in data if isinstance(e, dict) and "version" in e] if isinstance(data, list) else []


def _record(folder: Path, note: str, version: str | None = None) -> None:
    """Note ``version`` (default: the current one) in the history. The history lists versions in the
    order they were first written, once each, so a rollback always means one version older."""
    version = version or folder.resolve().name
    history = _history(folder)
    for entry in history:
        if entry["version"] == version:
            entry["note"] = note
            break
    else:
        history.append({"version": version, "at": time.time(), "note": note})
    write_atomic(
        _history_path(folder), orjson.dumps(history[-(KEEP_VERSIONS + 5) :], option=orjson.OPT_INDENT_2)
    )


def router_versions(folder: Path) -> list[dict[str, Any]]:
    """The kept versions, oldest first, with ``current`` marking the one serving."""
    folder = Path(folder)
    current = folder.resolve().name if folder.is_symlink() else None
    return [{**e, "current": e["version"] == current} for e in _history(folder)
            if (folder.parent / e["version"]).is_dir()]


def rollback_router(folder: Path, to: str | None = None) -> str:
    """Point ``folder`` at an earlier kept version (the one before the current, or ``to``), after
    validating it; returns the version now serving."""
    folder = Path(folder)
    kept = router_versions(folder)
    names = [e["version"] for e in kept]
    current = next((e["version"] for e in kept if e["current"]), None)
    if to is None:
        earlier = names[: names.index(current)] if current in names else names[:-1]
        if not earlier:
            raise RoutingError(f"{folder}: no earlier router version to roll back to",
                               hint="`flowfront router versions` lists what is kept")
        to = earlier[-1]
    elif to not in names:
        raise RoutingError(f"{folder}: no kept version {to!r}", hint=f"kept: {', '.join(names) or 'none'}")
    target = folder.parent / to
    load_router(target, expect_inputs_hash=None)
    link = folder.with_name(folder.name + f".link{os.getpid()}")
    link.unlink(missing_ok=True)
    os.symlink(target.name, link)
    os.replace(link, folder)
    _record(folder, f"rolled back from {current}")
    return to


def read_artifact(folder: Path) -> RouterArtifact:
    """Parse and validate ``router.json`` alone (no model files)."""
    return RouterArtifact.load(Path(folder) / "router.json")


def _read_checked(folder: Path, rel: str, sha256: str | None) -> bytes:
    path = folder / rel
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RoutingError(
            f"{path}: model file referenced by router.json is missing", hint=_RETRAIN
        ) from None
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
            raise RoutingError(
                f"{folder / f.path}: not a readable LightGBM model ({exc})", hint=_RETRAIN
            ) from None
    return out


def _load_regressor(folder: Path, model: ModelFile | None) -> Any:
    return None if model is None else _load_models(folder, [model], constant_none=True)[0]


def load_router(folder: Path, *, expect_inputs_hash: str | None) -> LightGBMRouter:
    """Validate the folder completely, then build the router (no torch import)."""
    folder = Path(folder)
    art = read_artifact(folder)
    if expect_inputs_hash is not None and art.frontier_hash != expect_inputs_hash:
        raise RoutingError(f"{folder}: router was trained for frontier {art.frontier_hash}, "
                           f"but the current frontier is {expect_inputs_hash}", hint=_RETRAIN)
    ref_bytes = _read_checked(folder, art.reference_file, art.reference_sha256)
    del ref_bytes  # checksum verified; np.load reads the same file without pickle
    reference = np.load(folder / art.reference_file, allow_pickle=False)
    state = _validated_state(folder, art, reference)
    return _router_from_state(state)


def load_progressive(folder: Path, router: LightGBMRouter) -> Any:
    """The folder's progressive policy over ``router`` (a ``ProgressivePolicy``), or None when it
    was trained without checkpoints."""
    art = read_artifact(folder)
    f = art.checkpoints_file
    if f is None or f.path is None or f.sha256 is None:
        return None
    from flowfront.router.checkpoint_artifact import load_checkpoints

    return load_checkpoints(Path(folder), f.path, f.sha256, router)


def _query_map(folder: Path, art: RouterArtifact) -> Any:
    """The query map, checked against the feature width and the priors' group count."""
    try:
        qmap = QueryMap.from_state(art.query_map)
        probe = np.zeros((1, art.n_features), dtype=np.float32)
        _, groups = qmap.transform(probe)
        priors = {name: np.asarray(v, dtype=np.float64) for name, v in art.priors.items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise RoutingError(
            f"{folder}/router.json: invalid query map or priors ({exc})", hint=_RETRAIN
        ) from None
    expected = (groups.shape[1], len(art.candidate_ids))
    bad = {n: p.shape for n, p in priors.items() if p.shape != expected}
    if bad or set(priors) != {"accuracy", "latency_s", "cost_usd"}:
        raise RoutingError(f"{folder}/router.json: priors {bad or sorted(priors)} do not match {expected}",
                           hint=_RETRAIN)
    return qmap


def _validated_state(folder: Path, art: RouterArtifact, reference: np.ndarray) -> dict[str, Any]:
    k = len(art.candidate_ids)
    expected_success = {"conditioned": 1, "prior": 0}.get(art.design, k)
    sizes = {
        "success_models": (len(art.success_models), expected_success),
        "candidate_features": (len(art.candidate_features), k),
        "static": (len(art.static.get("accuracy", [])), k),
    }
    bad = {n: v for n, (v, want) in sizes.items() if v != want}
    if bad or reference.ndim != 2 or reference.shape[1] != art.params.get("embedding_dim"):
        raise RoutingError(f"{folder}/router.json: inconsistent sizes for {k} candidates "
                           f"({bad or f'reference {reference.shape}'})", hint=_RETRAIN)
    _query_map(folder, art)
    _check_ranges(folder, art)
    return {
        "params": art.params,
        "design": art.design,
        "candidate_ids": art.candidate_ids,
        "n_features": art.n_features,
        "outcomes_hash": art.provenance.data_hash,
        "candidate_features": np.asarray(art.candidate_features, dtype=np.float32).reshape(k, -1),
        "static": art.static,
        "query_map": art.query_map,
        "priors": art.priors,
        "calibration": art.calibration,
        "ood_threshold": art.ood_threshold,
        "reference": reference,
        "success_models": _load_models(folder, art.success_models, constant_none=False),
        "latency_model": _load_regressor(folder, art.latency_model),
        "cost_model": _load_regressor(folder, art.cost_model),
        "regressors": art.regressors,
        "fit_seconds": art.fit_seconds,
        "validation_metrics": art.validation_metrics,
    }


def _check_ranges(folder: Path, art: RouterArtifact) -> None:
    """Estimates a router falls back on must be usable: accuracies in [0, 1], latency and cost
    finite and non-negative (a checksummed file can still say 2.5, written so by a bad trainer)."""
    for where, table in (("static", art.static), ("priors", art.priors)):
        for name, values in table.items():
            arr = np.asarray(values, dtype=np.float64)
            low, high = (0.0, 1.0) if name == "accuracy" else (0.0, np.inf)
            if not np.isfinite(arr).all() or (arr < low).any() or (arr > high).any():
                raise RoutingError(f"{folder}/router.json: {where}.{name} holds values outside "
                                   f"[{low:g}, {high:g}] or not finite", hint=_RETRAIN)


def _router_from_state(state: dict[str, Any]) -> LightGBMRouter:
    """Set a fitted router's learned attributes from validated artifact state (the inverse of
    ``save_router``)."""
    router = LightGBMRouter(**state["params"])
    router.design_, router.candidate_ids_ = state["design"], list(state["candidate_ids"])
    router.n_features_, router.source_hash_ = int(state["n_features"]), state["outcomes_hash"]
    router.candidate_features_ = state["candidate_features"]
    router.static_accuracy_, router.static_latency_s_, router.static_cost_usd_ = (
        np.asarray(state["static"][k]) for k in ("accuracy", "latency_s", "cost_usd"))
    router.query_map_ = QueryMap.from_state(state["query_map"])
    router.prior_accuracy_, router.prior_latency_s_, router.prior_cost_usd_ = (
        np.asarray(state["priors"][k]) for k in ("accuracy", "latency_s", "cost_usd"))
    router.calibration_, router.ood_threshold_ = state["calibration"], float(state["ood_threshold"])
    router.reference_embeddings_ = state["reference"]
    router.success_models_ = state["success_models"]
    router.latency_model_, router.cost_model_ = state["latency_model"], state["cost_model"]
    router.regressor_meta_, router.fit_seconds_ = state["regressors"], float(state["fit_seconds"])
    router.validation_metrics_ = state["validation_metrics"]
    return router
