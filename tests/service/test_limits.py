"""Slow clients cannot hold the server: idle, slow-header and slow-body connections are closed
within the configured timeouts while normal requests keep answering (loopback only, bounded)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests.service.conftest import live_server

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


def test_slow_clients_are_closed_and_normal_requests_answer(trained, workflows_dir: Path, tmp_path: Path) -> None:
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
            s.send(b"POST /v1/workflows/qa-cascade/run HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\n"
                   b"content-length: 1000\r\n\r\n{\"query\": ")  # a body that never ends
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
