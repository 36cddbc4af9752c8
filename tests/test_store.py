import sqlite3
from pathlib import Path

import pytest

from flowfront.errors import StoreError
from flowfront.store import Trace, call_key, connect, parse_store_url, prompt_key

MSG = ({"role": "user", "content": "2+2?"},)


def make_trace(model: str = "m", budget: int | None = None, response: str = "4") -> Trace:
    return Trace(
        key=call_key(model, budget, MSG, {}),
        prompt_key=prompt_key(model, MSG, {}),
        model=model,
        budget=budget,
        request={"messages": list(MSG)},
        response=response,
        prompt_tokens=3,
        completion_tokens=1,
        latency_s=0.5,
        cost_usd=1e-5,
    )


def test_keys_separate_budget_but_prompt_key_does_not() -> None:
    assert call_key("m", None, MSG, {}) != call_key("m", 64, MSG, {})
    assert prompt_key("m", MSG, {}) == prompt_key("m", MSG, {})
    assert prompt_key("m", MSG, {"temperature": 0.7}) != prompt_key("m", MSG, {})
    assert prompt_key("m", MSG, {}) != prompt_key("m2", MSG, {})


def test_round_trip_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    with connect(path) as store:
        store.put(make_trace())
        store.put(make_trace(budget=64, response="4!"))
        assert store.count() == 2
        got = store.get(make_trace(budget=64).key)
        assert got.response == "4!" and got.request == {"messages": list(MSG)}
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    # a second handle sees what the first committed
    with connect(path) as again:
        assert again.count() == 2


def test_corrupt_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a usable SQLite database.*move the file aside"):
        connect(path)


def test_store_urls_name_the_engine_and_never_show_the_password(tmp_path: Path) -> None:
    assert parse_store_url(f"sqlite://{tmp_path}/a.sqlite").path == tmp_path / "a.sqlite"
    assert parse_store_url(f"sqlite:///{tmp_path}/a.sqlite").path == tmp_path / "a.sqlite"
    assert parse_store_url(tmp_path / "b.sqlite").engine == "sqlite"
    pg = parse_store_url("postgresql://ff:hunter2-secret@db.internal:5433/flow")
    assert pg.engine == "postgresql" and pg.password == "hunter2-secret"
    assert pg.shown == "postgresql://ff@db.internal:5433/flow" and "hunter2" not in repr(pg) + str(pg)
    with pytest.raises(StoreError, match="scheme 'mysql' is not supported"):
        parse_store_url("mysql://x@y/z")
    with pytest.raises(StoreError, match="names no host") as info:
        parse_store_url("postgresql://ff:hunter2-secret@/flow")
    assert "hunter2" not in str(info.value)


def test_an_unreachable_postgres_is_one_line_without_the_password() -> None:
    pytest.importorskip("psycopg", reason="the postgres extra is not installed")
    from tests.helpers import free_port

    with pytest.raises(StoreError) as info:
        connect(f"postgresql://ff:hunter2-secret@127.0.0.1:{free_port()}/flow")
    text = str(info.value)
    assert "unreachable" in text and "postgresql://ff@127.0.0.1" in text and "hunter2" not in text
    assert "\n" not in text
