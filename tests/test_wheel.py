"""The wheel installs like a library: built from the checkout, installed into a fresh venv outside it,
run from a directory of the user's own (with folders named like flowfront's stages in it); and the
README's Quick tour, run there in order after the main job, leaves what the main job built serving.

The fresh venv gets flowfront from the wheel alone (``--no-deps --no-index``); its third-party
dependencies come from this test's own environment through a ``.pth`` path line (not a site dir,
so the checkout's editable install is not activated there), which keeps the test offline and
spares it installing torch again.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path

import httpx
import pytest

from tests.helpers import DATA_DIR, PROJECT_ROOT, cli_env, free_port, wait_http

pytestmark = pytest.mark.slow


def _sources(dest: Path) -> Path:
    """The files a clean clone would have (tracked and new, never ignored ones such as runs/)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for rel in filter(None, listed):
        src = PROJECT_ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("wheel")
    src = _sources(root / "src")
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(root / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("flowfront-*.whl"))
    venv.EnvBuilder(with_pip=False).create(root / "venv")
    python = root / "venv" / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (purelib / "_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    user = root / "user"
    for stage in ("router", "service", "compile", "eval"):  # a user's own folders of the same names
        (user / stage).mkdir(parents=True)
        (user / stage / "__init__.py").write_text(
            "raise ImportError('the user\\'s own package was imported')\n"
        )
    env = cli_env(FLOWFRONT_DATA_DIR=str(DATA_DIR), FLOWFRONT_QUIET="1")
    return {"bin": root / "venv" / "bin", "python": python, "user": user, "env": env, "wheel": wheel,
            "purelib": purelib}


def test_the_wheel_holds_the_stage_packages_and_the_configs(installed: dict) -> None:
    import zipfile

    names = zipfile.ZipFile(installed["wheel"]).namelist()
    assert "flowfront/router/model.py" in names and "flowfront/configs/workflows/qa-cascade.yaml" in names
    assert "flowfront/configs/recordings/live-math.jsonl.gz" in names
    assert not [n for n in names if n.split("/")[0] in {"router", "service", "compile", "eval", "configs"}]
    probe = subprocess.run([str(installed["python"]), "-c", (
        "import flowfront, flowfront.router.model, flowfront.service.app, flowfront.compile.search\n"
        "from flowfront.settings import Settings\n"
        "s = Settings(); print(flowfront.__file__); print(s.configs_dir); print(s.workdir)")],
        cwd=installed["user"], env=installed["env"], capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    module, configs, workdir = probe.stdout.split()
    assert module.startswith(str(installed["purelib"])) and configs.startswith(str(installed["purelib"]))
    assert Path(workdir) == installed["user"] / "runs"  # defaults from the current directory


# Tour lines that start servers or need live models or the benchmarks: not run here (the service and
# live tests cover them; `serve` is started below, after the tour).
TOUR_SKIPS = {
    "serve",
    "replay-serve",
    "record",
    "feedback",
    "retrain",
    "router",
}  # need a server or served traffic (tests/service)


def tour_commands() -> list[list[str]]:
    """The Quick tour's flowfront commands, in order, parsed as bash would (continuations, quotes
    spanning lines, comments)."""
    import shlex

    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme.split("## Quick tour", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands, pending = [], ""
    for line in block.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.rstrip().endswith("\\"):
            continue
        lexer = shlex.shlex(pending.replace("\\\n", " "), posix=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            words = list(lexer)
        except ValueError:  # a quote still open: the command goes on on the next line
            continue
        live = "litellm" in words and words[words.index("litellm") - 1] == "--backend"
        if words[:1] == [".venv/bin/flowfront"] and words[1] not in TOUR_SKIPS and not live:
            commands.append(words[1:])
        pending = ""
    return commands


def test_the_quick_tour_after_the_main_job_breaks_nothing(installed: dict) -> None:
    """After `run`, every tour command in order; then `serve` still serves the routers `run` trained
    (over the deduplicated frontiers) and report.md still matches the results it was built from."""
    from tests.tables import make_table

    user, work = installed["user"], installed["user"] / "runs"
    env = {**installed["env"], "FLOWFRONT_QUERY_LIMIT": "100"}  # a quick main job; the chain is the same
    make_table(user / "my-outcomes.csv")  # the tour's "your own outcome table"
    flowfront = str(installed["bin"] / "flowfront")
    # The routers the tour and `serve` use; the field's baselines are the eval tests' to check.
    main = subprocess.run([flowfront, "run", "--benchmarks", "qa-cascade,model-route", "--seeds", "1",
                           "--strategies", "frontier,frontier-progressive,cluster"],
                          cwd=user, env=env, capture_output=True, text=True, timeout=1200)
    assert main.returncode == 0, main.stdout[-2000:] + main.stderr[-2000:]
    built = {b: _frontier_hash(work / b / "frontier.json") for b in ("qa-cascade", "model-route")}
    commands = tour_commands()
    assert (
        len(commands) >= 14
        and commands[0] == ["benchmarks"]
        and ["models", "init", "my-outcomes.csv"] in commands
    )
    after_serve = [c for c in commands if c[0] == "traces"]  # prunes the store `serve` writes
    for args in [c for c in commands if c not in after_serve]:
        _ok(
            subprocess.run(
                [flowfront, *args], cwd=user, env=env, capture_output=True, text=True, timeout=900
            ),
            args,
        )
    for bench, digest in built.items():  # the tour's compiles wrote beside the main frontier, not over it
        assert _frontier_hash(work / bench / "frontier.json") == digest, bench
    _check_report_matches_results(work)
    _check_served(installed, work)
    for args in after_serve:
        _ok(
            subprocess.run(
                [flowfront, *args], cwd=user, env=env, capture_output=True, text=True, timeout=300
            ),
            args,
        )


def _ok(done: subprocess.CompletedProcess, args: list[str]) -> None:
    assert done.returncode == 0, f"{args}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
    assert "Traceback" not in done.stderr, args


def _frontier_hash(path: Path) -> str:
    from flowfront.compile.artifact import Frontier

    return Frontier.load(path).content_hash()


def _check_report_matches_results(work: Path) -> None:
    import orjson

    report = (work / "report.md").read_text()
    for path in sorted(work.glob("*/eval/results.json")):
        result = orjson.loads(path.read_bytes())
        for name, strategy in result["strategies"].items():
            utility = strategy["expected_utility"]
            interval = f"{utility['mean']:.3f} [{utility['low']:.3f}, {utility['high']:.3f}]"
            row = f"| {result['benchmark']} | {name} | {interval}"
            if name in ("frontier", "static", "full-space", "oracle"):
                assert row in report, row


def _check_served(installed: dict, work: Path) -> None:
    import orjson

    port = free_port()
    # `python -m` puts the current directory first on sys.path: the user's router/ must not shadow ours
    serve = subprocess.Popen([str(installed["python"]), "-m", "flowfront.cli", "serve", "--port", str(port),
                              "--workdir", str(work)],
                             cwd=installed["user"], env=installed["env"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", timeout=120)
        served = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=10).json()
        assert {"qa-cascade", "model-route"} <= {m["id"] for m in served["data"]}
        for bench in ("qa-cascade", "model-route"):
            frontier = httpx.get(f"http://127.0.0.1:{port}/v1/workflows/{bench}/frontier", timeout=10).json()
            assert frontier["router"] is True, bench  # the router `run` trained still matches the frontier
            assert 2 <= len(frontier["candidates"]) <= 24, bench
            configs = [orjson_dumps(c["config"]) for c in frontier["candidates"]]
            assert len(set(configs)) == len(configs), bench
        query = orjson.loads((DATA_DIR / "llmrouter" / "queries_test.jsonl").open().readline())["query"]
        chat = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                          json={"model": "model-route", "messages": [{"role": "user", "content": query}]})
        assert chat.status_code == 200, chat.text
        # LLMRouter's tables grade answers but keep no text: null with the reason, never an empty answer
        out = chat.json()
        assert out["choices"][0]["message"]["content"] is None and out["flowfront"]["content_unavailable"]
    finally:
        serve.terminate()
        out, _ = serve.communicate(timeout=30)
    assert "Traceback" not in out, out[-2000:]


def orjson_dumps(value) -> bytes:
    import orjson

    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
