"""A provider key never leaves the process: not in logs, terminals, traces, metrics, artifacts or responses.

The provider is a fake on loopback that answers 401 and echoes the caller's bearer token, the way
OpenAI's error message does. Everything the CLI and the service write is then grepped for the key.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from flowfront.redact import RedactingFormatter, Redactor, install_redaction, uninstall_redaction
from flowfront.settings import Settings
from tests.helpers import cli_env, fake_key, fake_provider, flowfront, grep_tree, masked, private_settings
from tests.service.support import copy_workdir, live_server

QA_MODELS = ("gpt-4-1106-preview", "gpt-3.5-turbo-1106", "claude-v2", "claude-v1", "claude-instant-v1",
             "meta/llama-2-70b-chat", "mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat",
             "WizardLM/WizardLM-13B-V1.2", "meta/code-llama-instruct-34b-chat", "mistralai/mistral-7b-chat")


def test_formatter_scrubs_exception_objects_passed_as_arguments() -> None:
    """The reported leak: an exception object as a %s argument is rendered after any filter ran."""
    key = fake_key()
    red = Redactor([key])
    record = logging.LogRecord(
        "x", logging.WARNING, __file__, 1, "call failed: %s", (RuntimeError(f"echo {key}"),), None
    )
    try:
        raise ValueError(f"inner {key}")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    line = RedactingFormatter(logging.Formatter("%(message)s"), red).format(record)
    assert key not in line and "call failed: echo [redacted]" in line and "inner [redacted]" in line


def test_install_wraps_every_handler_and_can_be_undone() -> None:
    logger = logging.getLogger("flowfront.test-secrets")
    handler = logging.StreamHandler()
    logger.addHandler(handler)
    try:
        changed = install_redaction(Redactor(["value-of-a-secret"]))
        assert isinstance(handler.formatter, RedactingFormatter)
        assert install_redaction(Redactor()) == []  # wrapped once only
        uninstall_redaction(changed)
        assert not isinstance(handler.formatter, RedactingFormatter)
    finally:
        logger.removeHandler(handler)


@pytest.mark.slow  # starts a subprocess or a server
@pytest.mark.parametrize("echo", [True, "masked"])
def test_cli_never_prints_or_stores_the_key(imported_settings: Settings, tmp_path: Path, echo) -> None:
    key = fake_key()
    settings = private_settings(imported_settings, tmp_path / "work")
    with fake_provider(models=QA_MODELS, echo_key=echo) as (base, seen):
        env = cli_env(FLOWFRONT_PROVIDER_API_KEY=key, OPENAI_API_KEY=key, FLOWFRONT_MAX_RETRIES="0")
        done = flowfront("exec", "qa-cascade", "--backend", "litellm", "--api-base", base, "--limit", "2",
                         "--workdir", str(settings.workdir), "--data-dir", str(settings.data_dir), env=env)
    assert seen, "the fake provider was never called"
    assert done.returncode != 0 and "AuthenticationError" in done.stderr
    assert key not in done.stdout + done.stderr and masked(key) not in done.stdout + done.stderr
    assert key[-4:] not in done.stderr and "[redacted]" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert grep_tree(settings.workdir, key) == []


@pytest.mark.slow  # starts a subprocess or a server
def test_a_query_carrying_a_key_is_stored_scrubbed(settings: Settings) -> None:
    from flowfront.store import Trace, connect

    key = fake_key()
    with connect(settings.store_path, redactor=Redactor()) as store:
        store.put(
            Trace(
                key="k",
                prompt_key="p",
                model="m",
                budget=None,
                request={"messages": [{"role": "user", "content": f"my key is {key}"}]},
                response=f"echo {key}",
                prompt_tokens=1,
                completion_tokens=1,
                latency_s=0.1,
                cost_usd=0.0,
                error=f"401: {key}",
            )
        )
        got = store.get("k")
    assert got is not None and key not in str(got) and "[redacted]" in got.response
    assert grep_tree(settings.workdir, key) == []


@pytest.mark.slow  # starts a subprocess or a server
def test_service_log_traces_metrics_and_responses_hold_no_key(trained: Settings, workflows_dir: Path,
                                                               tmp_path: Path) -> None:
    key = fake_key()
    work = copy_workdir(trained, tmp_path / "work")
    with fake_provider(models=QA_MODELS, echo_key="masked") as (base, seen), \
            live_server(work, workflows_dir, tmp_path, backend="litellm", api_base=base, provider_api_key=key,
                        max_retries="0", log_level="debug") as server:
        bodies = []
        for query in (
            "Which is heavier, a kilo of iron or a kilo of feathers? A) iron B) same",
            f"my key {key}",
        ):
            reply = httpx.post(
                f"{server.base}/v1/workflows/qa-cascade/run", json={"query": query}, timeout=60
            )
            bodies.append(reply.text)
            assert reply.status_code >= 500, reply.text  # every candidate's provider refuses the key
        chat = httpx.post(
            f"{server.base}/v1/chat/completions",
            timeout=60,
            json={"model": "qa-cascade", "messages": [{"role": "user", "content": "Pick A or B."}]},
        )
        bodies += [
            chat.text,
            httpx.get(f"{server.base}/metrics").text,
            httpx.get(f"{server.base}/readyz").text,
        ]
    assert seen, "the fake provider was never called"
    assert all(key not in b and masked(key) not in b and key[-4:] not in b for b in bodies)
    log = server.output()
    assert "Incorrect API key" in log or "AuthenticationError" in log, log[-2000:]
    assert key not in log and masked(key) not in log and key[-4:] not in log
    assert grep_tree(work.workdir, key) == []
