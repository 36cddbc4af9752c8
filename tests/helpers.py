"""Test helpers: free ports, a uvicorn/CLI subprocess that is always stopped, and HTTP waits."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from flowfront.settings import PROJECT_ROOT, Settings


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
        [sys.executable, "-m", "flowfront.cli", "replay-serve", "--port", str(port), "--workdir", str(workdir), *extra],
        env=cli_env(), cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
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
    for suffix in ("", "-wal", "-shm"):
        src = Path(str(settings.store_path) + suffix)
        if src.exists():
            shutil.copy(src, work / src.name)
    return settings.model_copy(update={"workdir": work})


def compiled_code_budget(settings: Settings, work: Path) -> Settings:
    """A private workdir where ``code-budget`` (the smallest benchmark) is profiled and compiled."""
    from compile.jobs import compile_job, profile_job

    settings = private_settings(settings, work)
    profile_job(settings, "code-budget", progress=False)
    compile_job(settings, "code-budget", mode="correlated")
    return settings
