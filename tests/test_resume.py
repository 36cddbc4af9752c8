"""A batch run on the litellm path killed midway and started again repeats no recorded call and
loses no finished one. The provider is `flowfront replay-serve`, which counts every call it answers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from flowfront.store import call_key
from tests.helpers import PROJECT_ROOT, cli_env, live_trace_rows, replay_server

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow


def live_keys(store: Path) -> set[str]:
    """The recorded live calls, keyed the way the replay server keys what it answers."""
    rows = live_trace_rows(store, "request")
    requests = [orjson.loads(r) for (r,) in rows]
    return {call_key(q["model"], q["max_tokens"], q["messages"], q["sampling"]) for q in requests}


def test_killed_run_resumes_without_repeating_calls(imported_settings, tmp_path: Path) -> None:
    work = tmp_path / "client"
    with replay_server(imported_settings.workdir) as url:
        args = [sys.executable, "-m", "flowfront.cli", "exec", "qa-cascade", "--backend", "litellm",
                "--api-base", f"{url}/v1", "--workdir", str(work), "--limit", "240", "--json"]
        first = subprocess.Popen(
            args, env=cli_env(), cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 180
        while len(live_keys(work / "traces.sqlite")) < 40:
            assert first.poll() is None, first.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run recorded too few calls in time"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
        recorded = live_keys(work / "traces.sqlite")
        served_before = httpx.get(f"{url}/v1/stats").json()["by_key"]
        assert recorded and set(recorded) <= set(served_before)

        second = subprocess.run(
            args, env=cli_env(), cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
        )
        assert second.returncode == 0, second.stderr
        served_after = httpx.get(f"{url}/v1/stats").json()["by_key"]

    repeated = {k for k in recorded if served_after[k] != served_before[k]}
    assert not repeated, f"{len(repeated)} recorded calls were made again"
    final = live_keys(work / "traces.sqlite")
    assert recorded <= final  # nothing finished was lost
    assert final == set(served_after)  # every call the provider answered is in the store
