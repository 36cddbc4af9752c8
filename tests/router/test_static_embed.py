"""The static variant: MiniLM distilled into per-token vectors, a query the mean of its tokens'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowfront.router.features import (
    EMBEDDING_PACKAGE,
    Embedder,
    FeatureConfig,
    embedding_package_version,
    featurize,
    resolve_embedding_model,
)
from flowfront.router.static_embed import static_path


def _table(exports: Path) -> Path:
    return static_path(exports, embedding_package_version(EMBEDDING_PACKAGE))


@pytest.fixture(scope="module")
def exports() -> Path:
    """The per-user export folder the product uses: the table is distilled there once per machine
    (~8 s), by whichever test or command needs it first, and read by all the others."""
    from flowfront.router.onnx_embed import default_export_dir

    return default_export_dir()


@pytest.fixture(scope="module")
def static(exports: Path) -> Embedder:
    return Embedder(FeatureConfig(variant="static"), None, export_dir=exports)


def test_static_is_the_default_and_a_query_is_the_mean_of_its_token_vectors(
    static: Embedder, exports: Path
) -> None:
    assert FeatureConfig().variant == "static"
    vector = static.encode(["The cat sat on the mat."])[0]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(resolve_embedding_model() / "tokenizer.json"))
    tokenizer.no_padding()  # the shipped tokenizer pads to a fixed length; a mean must not see pads
    ids = tokenizer.encode("The cat sat on the mat.", add_special_tokens=False).ids
    expected = np.load(_table(exports), allow_pickle=False)[ids].mean(axis=0)
    assert np.allclose(vector, expected / np.linalg.norm(expected), atol=1e-6)


def test_static_keeps_close_texts_close(static: Embedder) -> None:
    texts = ["How do I bake a loaf of sourdough bread at home?",
             "What is a good recipe for homemade sourdough bread?",
             "The central bank raised interest rates by half a point."]
    a, b, c = static.encode(texts)
    # Mean token vectors share a large common direction (cosines sit near 0.8), so the margin is
    # smaller than the encoder's; the router's query map centres and standardises them anyway.
    assert float(a @ b) > float(a @ c) + 0.08 and float(a @ b) > float(b @ c) + 0.08


def test_tail_truncation_keeps_the_question_and_empty_text_is_zero(static: Embedder, exports: Path) -> None:
    shots = "Example question about geography. Answer: B. " * 60
    texts = [
        shots + "What is 17 times 23? Multiply the numbers.",
        shots + "Is a verbal contract binding in court?",
    ]
    tail = static.encode(texts)
    head = Embedder(FeatureConfig(variant="static", truncation="head"), None, export_dir=exports).encode(
        texts
    )
    assert float(head[0] @ head[1]) > 0.9999  # the head is the shared examples only
    assert float(tail[0] @ tail[1]) < float(head[0] @ head[1]) - 1e-3  # the tail keeps the questions
    assert not np.any(static.encode([""])[0])


def test_the_token_table_is_distilled_once_and_reused(static: Embedder, exports: Path) -> None:
    static.encode(["warm"])
    # The per-user folder may also hold tables of other package versions: this one is named by its own.
    table = _table(exports)
    stamp = table.stat().st_mtime_ns
    again = Embedder(FeatureConfig(variant="static"), None, export_dir=exports)
    again.encode(["a new text, so the table is loaded"])
    assert table.stat().st_mtime_ns == stamp


def test_featurize_with_static_has_the_same_layout(static: Embedder) -> None:
    X = featurize(["What is 2+2? A) 3 B) 4"], FeatureConfig(variant="static"), static)
    assert X.shape[1] > 384 and np.isclose(np.linalg.norm(X[0, :384]), 1.0)


def test_exports_are_shared_by_every_workdir_and_fall_back_to_the_workdir(
    static: Embedder, exports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One export per user (not one per workdir: ~15 s each for ONNX); the workdir's cache only where
    the per-user folder cannot be made. Each folder is given the table, so a wrong folder would
    build a new one and show up."""
    import shutil

    text = ["The cat sat on the mat."]
    expected = static.encode(text)
    table = _table(exports)
    home = tmp_path / "xdg"
    (home / "flowfront" / "onnx").mkdir(parents=True)
    shutil.copy(table, home / "flowfront" / "onnx" / table.name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    for work in ("a", "b"):
        np.testing.assert_allclose(Embedder(FeatureConfig(variant="static"), tmp_path / work).encode(text),
                                   expected, atol=1e-6)
        assert not (tmp_path / work / "onnx").exists()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))  # its flowfront/onnx cannot be made
    (tmp_path / "c" / "onnx").mkdir(parents=True)
    shutil.copy(table, tmp_path / "c" / "onnx" / table.name)
    np.testing.assert_allclose(Embedder(FeatureConfig(variant="static"), tmp_path / "c").encode(text),
                               expected, atol=1e-6)
    assert sorted(p.name for p in (tmp_path / "c" / "onnx").iterdir() if p.suffix == ".npy") == [table.name]


@pytest.mark.slow  # distils the table again (~8 s); the fast tier reads the per-user one
def test_a_fresh_distillation_gives_the_table_in_use(static: Embedder, exports: Path, tmp_path: Path) -> None:
    import shutil

    static.encode(["warm"])
    for encoder in exports.glob("minilm-onnx-int8-*.onnx"):  # the encoder it is distilled from
        shutil.copy(encoder, tmp_path / encoder.name)
    fresh = Embedder(FeatureConfig(variant="static"), None, export_dir=tmp_path)
    fresh.encode(["warm"])
    np.testing.assert_allclose(np.load(_table(tmp_path)), np.load(_table(exports)), atol=1e-6)
