"""Real-model smoke test: SmolLM2-135M served by llama.cpp on loopback, read by both live transports.

Profile a few queries (one streamed call per prompt at the node's widest budget), compile, serve
one OpenAI-client request end to end, and kill a live run mid-way and resume it. Skipped, with the
reason, when llama-cpp-python's server or the model's weights are not installed (`make live`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

from bench._common import chat_workflow, stop_process
from flowfront.settings import Settings
from tests.helpers import (
    PROJECT_ROOT,
    cli_env,
    flowfront,
    free_port,
    live_trace_rows,
    loopback_http,
    wait_http,
)

MODEL = "smollm2-135m-instruct"
QUESTIONS = [
    ("What is 2 + 3?", "5"),
    ("What is 10 - 4?", "6"),
    ("What is 3 times 3?", "9"),
    ("What is 8 + 1?", "9"),
    ("What is 6 + 6?", "12"),
    ("What is 20 - 5?", "15"),
    ("What is 7 + 2?", "9"),
    ("What is 4 + 4?", "8"),
]


def _skip_reason() -> str | None:
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError:
        return (
            "llama-cpp-python[server] is not installed: run `make live` (the wheel is built once and cached)"
        )
    from flowfront.localmodels import weights_path
    from flowfront.modelcards import load_model_cards

    card = load_model_cards(PROJECT_ROOT / "configs" / "models")[MODEL]
    if not weights_path(Settings().models_dir, card).is_file():
        return f"{MODEL} weights are not installed: run `flowfront models install {MODEL}` (or `make live`)"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    """A SmolLM2 server in a private models folder, and configs/data folders with a smoke benchmark."""
    from flowfront.localmodels import serve, stop, weights_path
    from flowfront.modelcards import load_model_cards

    root = tmp_path_factory.mktemp("live")
    card = load_model_cards(PROJECT_ROOT / "configs" / "models")[MODEL]
    models_dir = root / "models"
    models_dir.mkdir()
    os.symlink(weights_path(Settings().models_dir, card), weights_path(models_dir, card))
    configs = root / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", configs, ignore=shutil.ignore_patterns("recordings"))
    (configs / "workflows" / "smoke.yaml").write_text(f"""name: smoke
nodes:
  solve:
    kind: llm
    messages: [{{role: user, content: "{{query}} Answer with just the number."}}]
    parser: number
    sampling: {{temperature: 0}}
    models: [{MODEL}]
    budgets: [16, 64]
flow: [solve]
output: solve
""")
    (configs / "benchmarks" / "smoke.yaml").write_text(f"""name: smoke
workflow: smoke
data: {{source: questions, files: [smoke_validate, smoke_test]}}
match: number
backend: litellm
default_config: {{nodes: {{solve: {{model: {MODEL}, budget: 64}}}}}}
""")
    data = root / "data" / "questions"
    data.mkdir(parents=True)
    for split, rows in (("validate", QUESTIONS[:4]), ("test", QUESTIONS[4:])):
        (data / f"smoke_{split}.jsonl").write_bytes(
            b"\n".join(orjson.dumps({"problem": q, "answer": a}) for q, a in rows)
        )
    servers = serve({MODEL: card}, models_dir, log=lambda m: None)
    env = cli_env(FLOWFRONT_CONFIGS_DIR=str(configs), FLOWFRONT_DATA_DIR=str(root / "data"),
                  FLOWFRONT_MODELS_DIR=str(models_dir), FLOWFRONT_WORKDIR=str(root / "work"))
    try:
        yield {
            "root": root,
            "env": env,
            "work": root / "work",
            "configs": configs,
            "base": servers[MODEL].api_base,
        }
    finally:
        stop(models_dir, log=lambda m: None)


def _traces(work: Path) -> list[tuple]:
    return live_trace_rows(work / "traces.sqlite", "key, budget, created_at, request, latency_s")


def test_profile_calls_each_prompt_once_at_the_widest_budget_and_streams(live) -> None:
    done = flowfront("profile", "smoke", "--workdir", str(live["work"]), env=live["env"], timeout=300)
    assert done.returncode == 0, done.stderr
    rows = _traces(live["work"])
    assert len(rows) == 4 and {r[1] for r in rows} == {64}  # 4 prompts x 2 budgets answered by 4 calls
    for _, _, _, request, latency in rows:
        stream = orjson.loads(request)["stream"]
        assert len(stream["times"]) == len(stream["offsets"]) > 0
        assert 0 < stream["times"][0] <= latency  # time to first token, then the whole call
    profiles = orjson.loads((live["work"] / "smoke" / "profiles.json").read_bytes())
    assert profiles["nodes"]["solve"]["choices"]
    compiled = flowfront("compile", "smoke", "--workdir", str(live["work"]), env=live["env"])
    assert compiled.returncode == 0, compiled.stderr


def test_serve_answers_an_openai_client_against_the_live_model(live, tmp_path: Path) -> None:
    from openai import OpenAI

    if not (live["work"] / "smoke" / "frontier.json").is_file():
        test_profile_calls_each_prompt_once_at_the_widest_budget_and_streams(live)
    workflows = tmp_path / "wf"
    workflows.mkdir()
    shutil.copy(live["configs"] / "workflows" / "smoke.yaml", workflows)
    log = tmp_path / "serve.log"
    with _serving(workflows, live["work"], {**live["env"], "FLOWFRONT_BACKEND": "litellm"}, log) as base:
        client = OpenAI(base_url=f"{base}/v1", api_key="unused")
        started = time.monotonic()
        reply = client.chat.completions.create(
            model="smoke", messages=[{"role": "user", "content": "What is 1 + 1?"}]
        )
        assert reply.choices[0].message.content, log.read_text()
        assert time.monotonic() - started < 30


@contextmanager
def _serving(workflows: Path, work: Path, env: dict[str, str], log: Path) -> Iterator[str]:
    """``flowfront serve`` of ``workflows`` over ``work`` in a subprocess, output in ``log``; yields its
    base URL once ready and stops it (SIGTERM) at exit."""
    port = free_port()
    command = [sys.executable, "-m", "flowfront.cli", "serve", "--workflows", str(workflows),
               "--port", str(port), "--workdir", str(work)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def test_a_killed_live_run_resumes_without_repeating_a_finished_call(live) -> None:
    work = live["root"] / "resume"
    args = [
        sys.executable,
        "-m",
        "flowfront.cli",
        "exec",
        "smoke",
        "--split",
        "test",
        "--backend",
        "litellm",
        "--workdir",
        str(work),
        "--config",
        orjson.dumps({"nodes": {"solve": {"model": MODEL, "budget": 64}}}).decode(),
    ]
    env = {**live["env"], "FLOWFRONT_DEFAULT_CONCURRENCY": "1"}
    proc = subprocess.Popen(args, env=env, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _traces(work):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {r[0]: r[2] for r in _traces(work)}
    assert 1 <= len(before) < 4, "kill the run mid-way"
    done = subprocess.run(args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    after = {r[0]: r[2] for r in _traces(work)}
    assert len(after) == 4 and all(
        after[k] == t for k, t in before.items()
    )  # finished calls kept, not made again


@pytest.mark.parametrize("budget", [8, 48])
def test_both_live_transports_read_the_same_greedy_stream(live, budget: int) -> None:
    """The default for local models reads the server's stream directly (flowfront.backends.sse);
    litellm's reader must give the same answer, token count, cut and one arrival time per token."""
    import asyncio

    import httpx

    from flowfront.backends.base import CallRequest
    from flowfront.backends.litellm_client import LiteLLMBackend
    from flowfront.modelcards import load_model_cards

    cards = load_model_cards(PROJECT_ROOT / "configs" / "models")
    request = CallRequest(
        model=MODEL,
        messages=({"role": "user", "content": "Name three colours."},),
        budget=budget,
        sampling={"temperature": 0},
    )
    got = {}
    for transport in ("direct", "litellm"):
        # llama.cpp reuses a repeated prompt's cached prefix, and a prompt evaluated from that cache
        # can decode differently even greedily (seen: "This is the most" vs "The most obvious");
        # an unrelated prompt first puts both transports in the same, fresh state.
        httpx.post(f"{live['base']}/chat/completions", timeout=60, json={
            "model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1})
        settings = Settings(workdir=live["work"], live_transport=transport, max_retries=0)
        got[transport] = asyncio.run(LiteLLMBackend(cards, settings, api_base=live["base"]).complete(request))
    direct, via_litellm = got["direct"], got["litellm"]
    assert direct.text == via_litellm.text and direct.text
    assert direct.completion_tokens == via_litellm.completion_tokens <= budget
    assert direct.truncated == via_litellm.truncated == (direct.completion_tokens == budget)
    assert direct.latency_source == "measured" and direct.timing is not None
    assert len(direct.timing.times) == direct.completion_tokens and direct.timing.offsets[-1] == len(
        direct.text
    )


CHAT = chat_workflow(MODEL, 160)


@pytest.fixture
def chat_server(live, tmp_path: Path):
    """`flowfront serve` (litellm backend) of a one-node chat workflow over the live model, with a
    frontier written by hand and a fresh store; yields a function starting one with extra settings."""
    from tests.helpers import hand_frontier

    workflows = tmp_path / "wf"
    workflows.mkdir()
    (workflows / "chat.yaml").write_text(CHAT)

    @contextmanager
    def start(name: str, **settings: str):
        work = tmp_path / name
        hand_frontier(
            workflows / "chat.yaml",
            [{"knobs": {}, "nodes": {"reply": {"model": MODEL, "budget": 160}}}],
            work,
        )
        env = {
            **live["env"],
            "FLOWFRONT_BACKEND": "litellm",
            **{f"FLOWFRONT_{k.upper()}": v for k, v in settings.items()},
        }
        with _serving(workflows, work, env, tmp_path / f"{name}.log") as base:
            yield base

    return start


def _stream(base: str, prompt: str) -> tuple[list[tuple[float, dict]], float]:
    import httpx

    started, events = time.perf_counter(), []
    body = {"model": "chat", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=120) as reply:
        assert reply.status_code == 200, reply.read()
        for line in reply.iter_lines():
            if line.startswith("data: {"):
                events.append((time.perf_counter() - started, orjson.loads(line[6:])))
    return events, time.perf_counter() - started


def test_the_answer_streams_token_by_token_from_the_live_model(live, chat_server) -> None:
    import httpx

    prompt = "Tell me a short story about a lighthouse keeper."
    with chat_server("stream") as base:
        events, total = _stream(base, prompt)
    pieces = [(t, e) for t, e in events if e["choices"] and e["choices"][0]["delta"].get("content")]
    assert len(pieces) >= 10 and all(e["flowfront"] == {"candidate": "c0", "model": MODEL} for _, e in pieces)
    assert pieces[0][0] < 0.5 * total  # the first words arrived long before the answer was done
    streamed = "".join(e["choices"][0]["delta"]["content"] for _, e in pieces)
    httpx.post(f"{live['base']}/chat/completions", timeout=60, json={  # llama.cpp's prompt cache: see above
        "model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1})
    with chat_server("plain") as base:  # a fresh store: the same prompt is called again, not read back
        plain = httpx.post(f"{base}/v1/chat/completions", timeout=120, json={
            "model": "chat", "messages": [{"role": "user", "content": prompt}]}).json()
    assert plain["choices"][0]["message"]["content"] == streamed


def test_a_failure_after_tokens_were_sent_ends_the_stream_with_an_error_event(chat_server) -> None:
    with chat_server("cut", call_timeout_s="1.5") as base:  # mid-answer: 160 tokens take ~4 s here
        events, _ = _stream(
            base, "Write a long story about a dragon who learns to paint, in many paragraphs."
        )
    pieces = [e for _, e in events if e.get("choices") and e["choices"][0]["delta"].get("content")]
    last = events[-1][1]
    assert (
        pieces
        and "error" in last
        and last["error"]["code"] == 504
        and "timed out" in last["error"]["message"]
    )
    assert not any(e.get("choices") and e["choices"][0].get("finish_reason") for _, e in events)


def _counting_proxy(target: str):
    """A pass-through HTTP proxy in front of the llama.cpp server that counts the chat calls it forwards."""
    from http.server import BaseHTTPRequestHandler

    import httpx

    seen: list[dict] = []

    class Forward(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            return

        def _relay(self, method: str) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0) or 0))
            if method == "POST":
                seen.append(orjson.loads(body))
            reply = httpx.request(method, f"{target}{self.path.removeprefix('/v1')}", content=body or None,
                                  headers={"content-type": "application/json"}, timeout=120)
            self.send_response(reply.status_code)
            self.send_header("content-type", reply.headers.get("content-type", "application/json"))
            self.send_header("content-length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        def do_GET(self) -> None:
            self._relay("GET")

        def do_POST(self) -> None:
            self._relay("POST")

    @contextmanager
    def running():
        with loopback_http(Forward) as base:
            yield base, seen

    return running()


def test_two_profiling_processes_sharing_one_postgres_store_make_no_call_twice(
    live, pg_cluster, tmp_path
) -> None:
    """Processes on different machines share a PostgreSQL store; here, two processes with separate
    workdirs (nothing shared but the database) profile the same queries at once."""
    url = pg_cluster.createdb("profiling")
    with _counting_proxy(live["base"]) as (proxy, seen):
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flowfront.cli",
                    "profile",
                    "smoke",
                    "--store",
                    url,
                    "--api-base",
                    proxy,
                    "--workdir",
                    str(tmp_path / f"w{i}"),
                ],
                env=live["env"],
                cwd=PROJECT_ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for i in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err.decode()[-2000:] for _, err in outs]
    prompts = [orjson.dumps(body["messages"]) for body in seen]
    assert len(prompts) == 4 and len(set(prompts)) == 4  # 4 prompts, each called once by one of the two
    from flowfront.store import connect

    with connect(url) as store:
        assert store.count("live") == 4 and store.stale_intents() == []


def test_a_model_the_server_does_not_serve_is_refused_not_answered_by_another(live) -> None:
    """One --api-base server with SmolLM2 on it: a call for another model must not be answered by
    SmolLM2 and recorded under the other name."""
    import asyncio

    from flowfront.backends.base import CallRequest
    from flowfront.backends.litellm_client import LiteLLMBackend
    from flowfront.errors import BackendError
    from flowfront.modelcards import load_model_cards

    cards = load_model_cards(PROJECT_ROOT / "configs" / "models")
    backend = LiteLLMBackend(cards, Settings(workdir=live["work"], max_retries=0), api_base=live["base"])
    request = CallRequest(
        model="qwen2.5-coder-0.5b-instruct", messages=({"role": "user", "content": "Hi"},), budget=8
    )
    with pytest.raises(
        BackendError, match=r"serves \['smollm2-135m-instruct'\], not 'qwen2.5-coder-0.5b-instruct'"
    ):
        asyncio.run(backend.complete(request))


def test_grade_judges_served_answers_with_the_live_model_and_resumes(
    live, chat_server, tmp_path: Path
) -> None:
    """`flowfront grade --judge` over answers served by the live model: every sampled answer gets a
    `judge` grade (or is counted unreadable), and a second run calls the model for none of them."""
    import httpx

    from flowfront.store import connect

    questions = [q for q, _ in QUESTIONS[:4]]
    with chat_server("graded") as base:
        for q in questions:
            assert (
                httpx.post(
                    f"{base}/v1/chat/completions",
                    timeout=120,
                    json={"model": "chat", "messages": [{"role": "user", "content": q}]},
                ).status_code
                == 200
            )
    work = tmp_path / "graded"  # chat_server's workdir for this name (its tmp_path is the test's)
    args = (
        "grade",
        str(tmp_path / "wf" / "chat.yaml"),
        "--judge",
        MODEL,
        "--sample",
        "1",
        "--workdir",
        str(work),
    )
    first = flowfront(*args, env=live["env"], timeout=600)
    assert first.returncode == 0, first.stderr
    with connect(work / "serve" / "traces.sqlite") as served:
        judged = served.feedback(name="judge")
    assert judged and all(f.value in (0.0, 1.0) and f.label == f"llm:{MODEL}" for f in judged)
    calls = len(live_trace_rows(work / "traces.sqlite", "key"))
    second = flowfront(*args, env=live["env"], timeout=600)
    assert second.returncode == 0 and f"{len(judged)} already graded" in second.stdout, (
        second.stdout + second.stderr
    )
    assert len(live_trace_rows(work / "traces.sqlite", "key")) == calls  # resumed: no judge call made twice
