"""`flowfront train` end to end on code-budget (small: ~300 train queries), and its errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowfront.errors import CompileError, RoutingError
from flowfront.router.artifact import load_router
from flowfront.router.train import load_data, train_job
from tests.helpers import flowfront, writable_copy


@pytest.fixture(scope="module")
def compiled(compiled_settings, tmp_path_factory):
    return writable_copy(compiled_settings, tmp_path_factory.mktemp("train"), "code-budget")


@pytest.mark.slow  # a full train job: the edit loop leaves it to make test
def test_train_writes_a_router_that_loads_and_predicts(compiled) -> None:
    path, metrics = train_job(compiled, "code-budget", "frontier")
    assert metrics["train_queries"] > 200 and metrics["candidates"] >= 2
    # The success design is chosen by cross-validated routing utility, and the record is reported.
    assert set(metrics["cv_utility"]) == {"per-candidate", "conditioned", "prior"}
    assert metrics["rule"].startswith("simplest design within one standard error")
    assert list(metrics["valid_utility"]) == [metrics["design"]]
    frontier_hash = load_data(compiled, "code-budget", "frontier").frontier.content_hash()
    router = load_router(path, expect_inputs_hash=frontier_hash)
    data = load_data(compiled, "code-budget", "frontier")
    pred = router.predict(data.X_test)
    assert pred.accuracy.shape == data.test.correct.shape
    assert np.all((pred.accuracy >= 0) & (pred.accuracy <= 1))
    with pytest.raises(RoutingError, match="another frontier|frontier"):
        load_router(path, expect_inputs_hash="0" * 16)


@pytest.mark.slow  # starts a subprocess or a server
def test_train_errors(compiled, tmp_path: Path) -> None:
    with pytest.raises(RoutingError, match="unknown strategy"):
        train_job(compiled, "code-budget", "psychic")
    empty = compiled.model_copy(update={"workdir": tmp_path})
    with pytest.raises(CompileError, match="frontier.json: not found"):
        train_job(empty, "code-budget", "static")
    proc = flowfront("train", "code-budget", "--strategy", "psychic", "--workdir", str(compiled.workdir))
    assert (
        proc.returncode != 0
        and "unknown strategy 'psychic'" in proc.stderr
        and "Traceback" not in proc.stderr
    )
