"""Test helpers: free ports, a uvicorn/CLI subprocess that is always stopped, and HTTP waits."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing, contextmanager
from pathlib import Path

import httpx

from flowfront.settings import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout the tests run from
CONFIGS = PROJECT_ROOT / "configs"
DATA_DIR = Path(os.environ.get("FLOWFRONT_DATA_DIR", PROJECT_ROOT.parent / "shared" / "data")).resolve()


def workflow_models(workflow: str, node: str) -> list[str]:
    """The models a built-in workflow's node may call, as its YAML lists them."""
    import yaml

    spec = yaml.safe_load((CONFIGS / "workflows" / f"{workflow}.yaml").read_text())
    return list(spec["nodes"][node]["models"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1", **extra}
    env.pop("FLOWFRONT_WORKDIR", None)
    return env


def flowfront(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, capturing its output."""
    return subprocess.run(
        [sys.executable, "-m", "flowfront.cli", *args], capture_output=True, text=True,
        env=env or cli_env(), timeout=timeout, cwd=PROJECT_ROOT,
    )


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up within {timeout}s")


@contextmanager
def replay_server(workdir: Path, *extra: str):
    """``flowfront replay-serve`` on a free loopback port; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowfront.cli",
            "replay-serve",
            "--port",
            str(port),
            "--workdir",
            str(workdir),
            *extra,
        ],
        env=cli_env(),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def private_settings(settings: Settings, work: Path) -> Settings:
    """``settings`` with its own workdir holding a copy of the shared trace store (WAL files included).

    Tests that write artifacts use it so the store imported once per session is shared but never
    written to by two tests at once.
    """
    work.mkdir(parents=True, exist_ok=True)
    copy_sqlite(settings.store_path, work / settings.store_path.name)
    return settings.model_copy(update={"workdir": work})


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database through SQLite's backup API. Copying the file and its
    -wal/-shm byte by byte is not safe while another process has it open: the -shm is a live index
    that the copy may pair with a different -wal, which SQLite reports as a disk I/O error."""
    if not src.exists():
        return
    with closing(sqlite3.connect(src, timeout=30)) as source, closing(sqlite3.connect(dst)) as target:
        source.backup(target)


def live_trace_rows(store: Path, columns: str) -> list[tuple]:
    """``columns`` of the live calls a (possibly still running) process has recorded. SQLite
    creates the file before the store writes its schema, so a poll can find the file without the
    table: that is no rows yet."""
    if not store.exists():
        return []
    with closing(sqlite3.connect(store, timeout=30)) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "traces" not in tables:
            return []
        return conn.execute(f"SELECT {columns} FROM traces WHERE source='live'").fetchall()


def writable_copy(settings: Settings, work: Path, *benchmarks: str) -> Settings:
    """``settings`` with a workdir of its own: a copy of the store and of the named benchmarks'
    artifacts (outcome caches and embeddings included, so nothing is rebuilt), free to change."""
    import shutil

    copied = private_settings(settings, work)
    for name in benchmarks:
        if (settings.workdir / name).is_dir():
            shutil.copytree(settings.workdir / name, work / name)
    if settings.workspace.embeddings.is_dir():
        shutil.copytree(settings.workspace.embeddings, work / "embeddings",
                        ignore=shutil.ignore_patterns("*.sqlite-wal", "*.sqlite-shm", "embeddings.sqlite"))
    return copied


def fake_key() -> str:
    """A provider-key-shaped secret, assembled at run time so secret scanners do not flag the tree."""
    return "sk-" + "proj-" + "Zq7" * 4 + "x9T" * 5 + "fake"


def masked(key: str) -> str:
    """How OpenAI echoes a key it refuses: its first 8 and last 4 characters around asterisks."""
    return key[:8] + "*" * 40 + key[-4:]


@contextmanager
def fake_provider(*, models: tuple[str, ...] = (), status: int = 401, echo_key: bool | str = True,
                  answer: str = "A"):
    """An OpenAI-compatible provider on loopback. ``GET /models`` lists ``models``; a chat call
    answers ``status``: 401 echoes the caller's bearer token (``echo_key="masked"``: masked, the
    way OpenAI's error does), 200 answers ``answer``. Yields (base URL, list of received bodies)."""
    import json
    from http.server import BaseHTTPRequestHandler

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            return

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in models]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
            seen.append(body)
            token = self.headers.get("authorization", "")
            if status == 401:
                bearer = token.removeprefix("Bearer ")
                shown = masked(bearer) if echo_key == "masked" else token if echo_key else "***"
                message = (f"Incorrect API key provided: {shown}. "
                           "You can find your key at your provider's dashboard.")
                self._send(401, {"error": {"message": message, "type": "invalid_request_error",
                                           "code": "invalid_api_key"}})
                return
            if status != 200:
                self._send(status, {"error": {"message": "unavailable", "type": "server_error"}})
                return
            self._send(200, {"id": "x", "object": "chat.completion", "created": 0, "model": body.get("model"),
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": answer}}],
                             "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})

    with loopback_http(Handler) as base:
        yield base, seen


@contextmanager
def loopback_http(handler: type):
    """An HTTP server with ``handler`` on a free loopback port, in a thread; yields its ``/v1`` base URL."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def grep_tree(folder: Path | str, needle: str) -> list[str]:
    """Files under ``folder`` (SQLite WAL and shm files included) whose bytes contain ``needle``.

    The files are read by a child process (grep), never opened here: closing any descriptor of a
    SQLite file drops every POSIX lock this process holds on it, so a test that read a live store
    with ``read_bytes`` while an app in this process had it open let another process believe it was
    the store's last user, checkpoint and delete the WAL index under it ("database disk image is
    malformed" afterwards)."""
    done = subprocess.run(
        ["grep", "-rlaF", "--", needle, str(folder)], capture_output=True, text=True, timeout=120
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(f"grep failed: {done.stderr}")
    return sorted(done.stdout.split())


def hand_frontier(workflow_path: Path, configs: list[dict], out: Path) -> Path:
    """A frontier written by hand for a workflow (made-up estimates in the order given: the first is
    the most accurate), for tests of serving that need no compile."""
    from flowfront.compile.artifact import Estimates, Frontier
    from flowfront.spec import load_workflow

    wf, k = load_workflow(workflow_path), len(configs)
    estimates = [Estimates(accuracy=0.9 - 0.1 * i, latency_sequential_s=1.0 + i, latency_parallel_s=1.0 + i,
                           cost_usd=0.001 * (k - i)) for i in range(k)]
    return Frontier.of_configurations(wf, configs, estimates).save(out / wf.name / "frontier.json")
