"""Slow clients cannot hold the server: idle, slow-header and slow-body connections are closed
within the configured timeouts while normal requests keep answering (loopback only, bounded)."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.service.support import live_server

# the slow tier: it starts subprocesses or servers (make test-fast leaves it out)
pytestmark = pytest.mark.slow

N_EACH = 100  # idle + slow-header + slow-body = 300 connections


def _open(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.setblocking(False)
    return sock


def _closed(sock: socket.socket) -> bool:
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return False
    except OSError:
        return True
    if data:  # e.g. a 408 answer to a slow body: read on until the server closes
        return _closed(sock) if b"408" in data or not data.startswith(b"HTTP/") else False
    return True


def test_slow_clients_are_closed_and_normal_requests_answer(
    trained, workflows_dir: Path, tmp_path: Path
) -> None:
    with live_server(trained, workflows_dir, tmp_path, header_timeout_s="2", body_timeout_s="2",
                     keep_alive_s="2") as server:
        socks = []
        for _ in range(N_EACH):
            socks.append(_open(server.base))  # idle: says nothing
        for _ in range(N_EACH):
            s = _open(server.base)
            s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
            socks.append(s)
        for _ in range(N_EACH):
            s = _open(server.base)
            s.send(
                b"POST /v1/workflows/qa-cascade/run HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b'content-length: 1000\r\n\r\n{"query": '
            )  # a body that never ends
            socks.append(s)
        started = time.monotonic()
        answered = 0
        while time.monotonic() - started < 3:  # normal traffic while 300 slow clients hold connections
            assert httpx.get(f"{server.base}/healthz", timeout=5).status_code == 200
            answered += 1
        deadline = started + 15
        open_socks = list(socks)
        while open_socks and time.monotonic() < deadline:
            open_socks = [s for s in open_socks if not _closed(s)]
            time.sleep(0.2)
        for s in socks:
            s.close()
    assert answered > 10
    assert not open_socks, f"{len(open_socks)} of {len(socks)} slow connections still open after 15 s"


def test_a_trickling_body_is_cut_off_within_seconds_not_held_forever(trained, workflows_dir: Path,
                                                                     tmp_path: Path) -> None:
    """One byte every half second restarts any per-chunk timer; the total deadline and the minimum
    rate (defaults) end it within a few seconds, while normal requests keep answering."""
    import threading

    with live_server(trained, workflows_dir, tmp_path) as server:
        socks = []
        for _ in range(20):
            s = _open(server.base)
            s.send(
                b"POST /v1/workflows/qa-cascade/run HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                b"content-length: 100000\r\n\r\n{"
            )
            socks.append(s)
        stop = threading.Event()

        def trickle() -> None:
            while not stop.is_set():
                for s in socks:
                    with contextlib.suppress(OSError):  # closed by the server: what the test waits for
                        s.send(b" ")
                time.sleep(0.5)

        thread = threading.Thread(target=trickle, daemon=True)
        thread.start()
        started = time.monotonic()
        replies = []
        open_socks = list(socks)
        while open_socks and time.monotonic() - started < 10:
            replies.append(httpx.get(f"{server.base}/healthz", timeout=5).status_code)
            open_socks = [s for s in open_socks if not _closed(s)]
            time.sleep(0.1)
        closed_after = time.monotonic() - started
        stop.set()
        thread.join()
        for s in socks:
            s.close()
    assert not open_socks and closed_after < 6, (
        f"{len(open_socks)} trickling bodies still open after {closed_after:.1f} s"
    )
    assert replies and set(replies) == {200}


def test_a_head_over_the_limit_is_refused_whole_or_in_pieces(
    trained, workflows_dir: Path, tmp_path: Path
) -> None:
    with live_server(trained, workflows_dir, tmp_path) as server:
        for head_bytes, pieces in ((70_000, 1), (20_000, 40), (10_000, 1)):
            s = socket.create_connection(tuple([server.base.removeprefix("http://").split(":")[0],
                                                int(server.base.rsplit(":", 1)[1])]), timeout=10)
            head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nx-pad: " + b"a" * head_bytes + b"\r\n\r\n"
            step = len(head) // pieces + 1
            with contextlib.suppress(OSError):  # the server may close before the last piece: the refusal
                for i in range(0, len(head), step):
                    s.sendall(head[i:i + step])
            reply = s.recv(4096)
            s.close()
            if head_bytes > 16 * 1024:
                assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
            else:
                assert reply.startswith(b"HTTP/1.1 200"), reply[:200]


def test_sighup_reloads_gracefully(trained, workflows_dir: Path, tmp_path: Path, test_queries) -> None:
    import signal
    from concurrent.futures import ThreadPoolExecutor

    with live_server(trained, workflows_dir, tmp_path) as server:
        before = httpx.get(f"{server.base}/readyz").json()["generation"]
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(httpx.post, f"{server.base}/v1/workflows/qa-cascade/run",
                                   json={"query": q}, timeout=60) for q in test_queries[:40]]
            time.sleep(0.05)
            server.proc.send_signal(signal.SIGHUP)
            statuses = [f.result().status_code for f in futures]
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline and httpx.get(f"{server.base}/readyz").json()["generation"] == before
        ):
            time.sleep(0.2)
        assert server.proc.poll() is None  # still running
        assert httpx.get(f"{server.base}/readyz").json()["generation"] == before + 1
    assert statuses == [200] * 40
