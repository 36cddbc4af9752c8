"""The store contract suite (flowfront.store.testing) on both engines: SQLite and a real PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from flowfront.store import TraceStore, connect
from flowfront.store.testing import *  # noqa: F403 - the shared contract suite
from flowfront.store.testing import v1_rows

_names = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])  # a cluster: slow tier
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def open_store(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., TraceStore]:
    """Opens a fresh store of the engine; called with a URL, another handle on that store."""
    opened: list[TraceStore] = []

    def fresh(url=None, **kwargs) -> TraceStore:  # noqa: ANN001 - a StoreURL or a string
        if url is None:
            if engine == "sqlite":
                url = tmp_path / f"s{next(_names)}.sqlite"
            else:
                url = request.getfixturevalue("pg_cluster").createdb(f"c{next(_names)}")
        store = connect(url, **kwargs)
        opened.append(store)
        return store

    yield fresh
    for store in opened:
        store.close()


@pytest.fixture
def v1_store_url(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    ddl, rows = v1_rows()
    if engine == "sqlite":
        import sqlite3

        path = tmp_path / "v1.sqlite"
        with sqlite3.connect(path) as conn:
            for statement in ddl:
                conn.execute(statement)
            for sql, args in rows:
                conn.execute(sql, args)
        return str(path)
    import psycopg

    from flowfront.store.testing import v1_ddl_postgres

    url = request.getfixturevalue("pg_cluster").createdb(f"v1_{next(_names)}")
    with psycopg.connect(url) as conn:
        for statement in v1_ddl_postgres():
            conn.execute(statement)
        for sql, args in rows:
            conn.execute(sql.replace("?", "%s"), args)
    return url
