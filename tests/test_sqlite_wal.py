"""Several processes opening one new SQLite file in WAL mode at the same moment all succeed."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow


def test_processes_opening_a_new_file_together_all_get_wal(tmp_path: Path) -> None:
    db = tmp_path / "shared.sqlite"
    start_at = time.time() + 3.0  # every process is imported and waiting before the first opens
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from flowfront.sqlite_wal import connect_wal
        time.sleep(max(0.0, {start_at} - time.time()))
        conn = connect_wal(Path({str(db)!r}), timeout=20.0, first=("PRAGMA auto_vacuum=INCREMENTAL",))
        conn.execute("CREATE TABLE IF NOT EXISTS t (writer INTEGER, i INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(int(sys.argv[1]), i) for i in range(50)])
        conn.commit()
        print(conn.execute("PRAGMA journal_mode").fetchone()[0])
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], cwd=PROJECT_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for n in range(6)]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        assert out.decode().strip() == "wal"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT writer) FROM t").fetchone() == (300, 6)
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental, set before the switch
