"""A private PostgreSQL cluster for tests and benchmarks, from the machine's own binaries.

``initdb`` in a temporary directory, ``pg_ctl start`` on a free loopback port with the socket in
that directory, ``pg_ctl stop`` and removal at the end. PostgreSQL refuses to run as root, so as
root the cluster belongs to the ``postgres`` system user (``runuser``). Nothing here mocks the
database: it is the real server the deployment would use.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PostgresCluster", "find_binaries", "missing_reason"]

INSTALL_HINT = "install the Debian package postgresql-15 (apt-get install postgresql-15)"


def find_binaries() -> Path | None:
    """The folder holding initdb and pg_ctl, newest version first (None when absent)."""
    override = os.environ.get("FLOWFRONT_PG_BIN")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(str(Path(which).parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def missing_reason() -> str | None:
    """Why a cluster cannot start here, in one line (None: it can)."""
    if find_binaries() is None:
        return f"PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL refuses to run as root"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    """One throwaway cluster: ``with PostgresCluster() as pg: connect(pg.url("flowfront"))``.

    ``fast`` turns fsync off: a crash of the server keeps what it committed (the operating
    system still has it), only a crash of the machine would not, which tests never cause. Commits
    stay synchronous (``synchronous_commit=off`` would let a server crash lose acknowledged
    rows, which the durability tests would rightly report). Benchmarks keep PostgreSQL's defaults.
    """

    fast: bool = True
    user: str = "flowfront"
    password: str = field(default_factory=lambda: "pw-" + os.urandom(6).hex())
    port: int = 0
    folder: Path | None = None
    _bin: Path | None = None

    def url(self, dbname: str = "flowfront", *, with_password: bool = True) -> str:
        auth = f"{self.user}:{self.password}" if with_password else self.user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self._bin is not None
        command = [str(self._bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> PostgresCluster:
        why = missing_reason()
        if why is not None:
            raise RuntimeError(why)
        self._bin = find_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="flowfront-pg-"))
        data = self.folder / "data"
        pwfile = self.folder / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        self._run("initdb", "-D", str(data), "-U", self.user, "--pwfile", str(pwfile), "-A", "scram-sha-256",
                  "-E", "UTF8", "--no-instructions", *(["--no-sync"] if self.fast else []))
        self.port = self.port or _free_port()
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if self.fast:
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(self.folder / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self.createdb("flowfront")
        return self

    def createdb(self, name: str) -> str:
        """A new database in the cluster; returns its URL."""
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                return self.url(name)
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``immediate`` is a crash, as far as clients can tell)."""
        if self.folder is not None:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        assert self.folder is not None
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c max_connections=200"
        if self.fast:
            options += " -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"), "-o", options,
                  "-w", "-t", "60", "start")

    def close(self) -> None:
        self.stop("immediate")
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
