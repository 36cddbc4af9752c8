"""Run generated code against its tests in a sandboxed subprocess.

The child is a fresh isolated interpreter (``python -I``) in an empty temporary folder with an
empty environment, CPU, memory, file-size and process limits, a wall-clock timeout, and, where
the kernel allows it (``unshare -n``, root or user namespaces), no network at all. This is a
guard against accidents of small models (infinite loops, huge allocations, stray file writes),
not a security boundary against hostile code; run untrusted workloads in a container.

Results are memoised per (code, tests) in the process: replaying a benchmark evaluates the same
few programs many times.
"""

from __future__ import annotations

import functools
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import orjson

_CPU_S = 10
_MEMORY_BYTES = 1 << 30
_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class TestOutcome:
    passed: bool
    detail: str  # the last line of the failure ("" when it passed)


def _limits() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_CPU, (_CPU_S, _CPU_S))
    resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_BYTES, _MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_FSIZE, (_FILE_BYTES, _FILE_BYTES))
    os.setsid()


@functools.cache
def _no_network_prefix() -> tuple[str, ...]:
    """``unshare -n`` when it works here (a probe run), else nothing."""
    tool = shutil.which("unshare")
    if tool is None:
        return ()
    try:
        probe = subprocess.run([tool, "-n", "true"], capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (tool, "-n") if probe.returncode == 0 else ()


def reference_tests(reference: str | None) -> tuple[str, str] | None:
    """(test code, entry point) from a query's reference JSON, or None when it holds no tests."""
    if not reference:
        return None
    try:
        data = orjson.loads(reference)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "test" not in data or "entry_point" not in data:
        return None
    return str(data["test"]), str(data["entry_point"])


def run_tests(code: str | None, test: str, entry_point: str, *, timeout_s: float = 15.0) -> TestOutcome:
    """Whether ``code`` defines ``entry_point`` so that ``check(entry_point)`` in ``test`` passes."""
    if not code:
        return TestOutcome(False, "no code")
    key = hashlib.blake2b(orjson.dumps([code, test, entry_point]), digest_size=16).hexdigest()
    return _run_cached(key, code, test, entry_point, timeout_s)


@functools.lru_cache(maxsize=8192)
def _run_cached(key: str, code: str, test: str, entry_point: str, timeout_s: float) -> TestOutcome:
    program = f"{code}\n\n{test}\n\ncheck({entry_point})\n"
    with tempfile.TemporaryDirectory(prefix="flowfront-test-") as folder:
        cmd = [*_no_network_prefix(), sys.executable, "-I", "-c", program]
        try:
            done = subprocess.run(
                cmd,
                cwd=folder,
                env={"PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                timeout=timeout_s,
                preexec_fn=_limits,
            )
        except subprocess.TimeoutExpired:
            return TestOutcome(False, f"timed out after {timeout_s:g} s")
    if done.returncode == 0:
        return TestOutcome(True, "")
    lines = (done.stderr or "").strip().splitlines()
    return TestOutcome(False, lines[-1][:300] if lines else f"exit code {done.returncode}")
