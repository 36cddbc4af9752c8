"""The ``flowfront`` command line.

Every command builds its Settings once, here, and passes them down. A FlowfrontError becomes one
line on stderr and a non-zero exit, never a traceback; anything else is a bug and shows as one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer
from typer.exceptions import TyperException

from flowfront.cli._common import ApiBase, DataDir, StoreOpt, Workdir, echo_json, make_settings
from flowfront.cli.live import models_app, record
from flowfront.cli.loop import drift, feedback_app, grade, retrain, router_app
from flowfront.cli.select import frontier, route, select
from flowfront.cli.traces import traces_app
from flowfront.errors import FlowfrontError, SpecError
from flowfront.redact import Redactor
from flowfront.settings import prepare_environment

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Compile, route and serve structured LLM workflows."
)
data_app = typer.Typer(no_args_is_help=True, help="Import recorded outcomes into the trace store.")
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(traces_app, name="traces")
app.add_typer(feedback_app, name="feedback")
app.add_typer(router_app, name="router")
app.command()(grade)
app.command()(retrain)
app.command()(drift)
app.command()(record)
app.command()(frontier)
app.command()(select)
app.command()(route)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"flowfront {version('flowfront')}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="print the version and exit")] = False) -> None:
    """Compile, route and serve structured LLM workflows."""
_echo_json = echo_json


@app.command()
def space(
    workflow: Annotated[str, typer.Argument(help="workflow or benchmark name, or a YAML path")],
) -> None:
    """Print the design space: its size and every node's choices."""
    from flowfront.benchmarks import load_workflow_arg
    from flowfront.space import call_slots, knob_assignments, node_choices, space_size

    settings = make_settings()
    wf = load_workflow_arg(workflow, settings.configs_dir, own_dir=settings.workspace.own)
    typer.echo(f"workflow {wf.name} (hash {wf.content_hash}): {space_size(wf):,} configurations")
    for name, node in wf.llm_nodes().items():
        budgets = ", ".join("unlimited" if b is None else str(b) for b in node.budgets)
        typer.echo(
            f"  node {name}: {len(node_choices(node))} choices = {len(node.models)} models x budgets "
            f"[{budgets}]"
        )
    for name, knob in wf.knobs.items():
        typer.echo(f"  knob {name}: {knob.values}")
    for knobs in knob_assignments(wf):
        if knobs:
            slots = {n: c for n, c in call_slots(wf, knobs).items() if c}
            typer.echo(f"  with {knobs}: calls per node {slots}")


def _parse_config(text: str | None, default):
    from flowfront.space import Configuration

    if text is None:
        return default
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise SpecError(f"configuration file {path} not found")
        text = path.read_text()
    return Configuration.parse(text, "--config")


@app.command(name="exec")
def exec_(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path")],
    config: Annotated[str | None, typer.Option("--config", help="configuration JSON, or @file.json")] = None,
    split: Annotated[str, typer.Option(help="train | test | all")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    backend: Annotated[str | None, typer.Option(help="replay | replay-litellm | litellm")] = None,
    api_base: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL for the litellm backend")
    ] = None,
    outcomes: Annotated[
        Path | None, typer.Option(help="an outcome table to use instead of the built-in data")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="run only the first N queries")] = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """Execute one configuration over a benchmark split and print accuracy, latency and cost."""
    from flowfront.benchmarks import load_benchmark
    from flowfront.runtime import (
        benchmark_queries,
        execute,
        load_cards,
        make_backend,
        open_store,
        prepare_data,
    )
    from flowfront.space import resolve

    settings = make_settings(data_dir, workdir, store=store)
    bench = load_benchmark(benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    if outcomes is None:
        resolve(bench.workflow, _parse_config(config, bench.default_config))  # fail fast, before data work
    with open_store(settings) as ts:
        data = prepare_data(bench, ts, settings, outcomes)
        if outcomes is not None:
            bench = bench.with_models(data.summary["models"])
        cfg = _parse_config(config, bench.default_config)
        resolve(bench.workflow, cfg)
        queries = benchmark_queries(bench, ts, data, None if split == "all" else split)[:limit]
        name = backend or ("litellm" if bench.spec.backend == "litellm" else settings.backend)
        be = make_backend(
            name, ts, load_cards(settings), settings, models=bench.workflow.all_models(), api_base=api_base
        )
        out = execute(bench, cfg, queries, be, settings, progress=not as_json and sys.stderr.isatty())
    s = out.summary
    payload = {"benchmark": bench.name, "split": split, **s.as_dict()}
    if as_json:
        _echo_json(payload)
        return
    typer.echo(
        f"{bench.name} [{split}] n={s.n}  accuracy={s.accuracy:.4f}  latency "
        f"seq={s.latency_sequential_s:.3f}s "
        f"par={s.latency_parallel_s:.3f}s  cost=${s.cost_usd:.6f}/query  errors={s.errors}"
    )


@data_app.command(name="import")
def data_import(
    sources: Annotated[
        list[str], typer.Argument(help="routerbench, llmrouter, or outcome table paths")
    ] = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """Import outcome data into the trace store (skipped when already current)."""
    from flowfront.data import BUILTIN_SOURCES, ensure_imported, source_for_outcomes
    from flowfront.runtime import open_store

    settings = make_settings(data_dir, workdir, store=store)
    with open_store(settings) as ts:
        for src in sources or list(BUILTIN_SOURCES):
            if src in BUILTIN_SOURCES:
                summary = ensure_imported(ts, src, data_dir=settings.require_data_dir())
            else:
                path = Path(src)
                src = source_for_outcomes(path)
                summary = ensure_imported(ts, src, path=path)
            dropped = (
                ", ".join(f"{n} {why}" for why, n in sorted(summary.get("dropped", {}).items())) or "none"
            )
            typer.echo(
                f"{src}: kept {summary['rows_kept']} of {summary['rows_read']} rows "
                f"({len(summary['models'])} models, {summary['queries']} queries); dropped: {dropped}"
            )


@app.command()
def benchmarks() -> None:
    """List the built-in benchmarks."""
    from flowfront.benchmarks import list_benchmarks, load_benchmark
    from flowfront.space import space_size

    settings = make_settings()
    for name in list_benchmarks(settings.configs_dir):
        bench = load_benchmark(name, settings.configs_dir, own_dir=settings.workspace.own)
        typer.echo(f"{name:14s} {space_size(bench.workflow):>12,} configs  {bench.spec.description}")


@app.command(name="replay-serve")
def replay_serve(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8100,
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    fail_model: Annotated[list[str], typer.Option(help="answer 503 for this model (fault drills)")] = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """Serve replay answers over an OpenAI-compatible /v1/chat/completions."""
    import uvicorn

    from flowfront.backends.replay import ReplayBackend
    from flowfront.runtime import load_cards
    from flowfront.service.replay_server import create_replay_app
    from flowfront.store import connect

    settings = make_settings(data_dir, workdir, store=store)
    app_ = create_replay_app(
        ReplayBackend(connect(settings.store_url), load_cards(settings)),
        fail_models=frozenset(fail_model or []),
    )
    uvicorn.run(app_, host=host, port=port, log_level="warning")


@app.command()
def profile(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path")],
    max_queries: Annotated[
        int | None, typer.Option(min=1, help="profile on a seeded sample of the train split")
    ] = None,
    seed: Annotated[int, typer.Option()] = 0,
    reference: Annotated[
        str | None, typer.Option(help="reference configuration JSON (default: the benchmark's)")
    ] = None,
    judge: Annotated[
        bool, typer.Option(help="grade live calls with the LLM judge of configs/judge.yaml")
    ] = False,
    api_base: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL for the litellm backend")
    ] = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """Profile every (model, budget) of every node on its induced dataset → profiles.json."""
    from flowfront.compile.jobs import profile_job

    settings = make_settings(data_dir, workdir, store=store)
    ref = _parse_config(reference, None)
    path = profile_job(settings, benchmark, max_queries=max_queries, seed=seed, reference=ref,
                       progress=sys.stderr.isatty(), api_base=api_base, judge=judge)
    typer.echo(f"wrote {path}")


_NEAR_FRONT_HELP = ("also keep configurations within this much accuracy of the front at their best "
                    "trade-off (for routing; default 0.2); 0 keeps the strict Pareto front (written beside "
                    "the default one)")
_NAME_HELP = ("artifact name (default: `frontier` for the default search, `frontier-<hash>` for any other, "
              "so it never replaces the default)")


def _compile_options(objective: str, execution: str, proxy: str, knobs: str | None) -> dict | None:
    """Check compile's choice options; the parsed knob filter."""
    for option, value, allowed in (("objective", objective, ("latency", "cost", "both")),
                                   ("execution", execution, ("sequential", "parallel")),
                                   ("proxy", proxy, ("independent", "correlated"))):
        if value not in allowed:
            raise SpecError(f"--{option} {value!r} is not one of {list(allowed)}")
    try:
        knob_filter = orjson.loads(knobs) if knobs else None
    except orjson.JSONDecodeError as exc:
        raise SpecError(f"--knobs is not valid JSON ({exc})",
                        hint='e.g. --knobs \'{"checker": ["on"]}\'') from None
    if knob_filter is not None and not isinstance(knob_filter, dict):
        raise SpecError("--knobs must be a JSON object of knob -> allowed values")
    return knob_filter


@app.command(name="compile")
def compile_(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path")],
    objective: Annotated[str, typer.Option(help="latency | cost | both (3-D)")] = "latency",
    execution: Annotated[str, typer.Option(help="sequential | parallel latency model")] = "parallel",
    proxy: Annotated[str, typer.Option(help="correlated (default) | independent (FlowCompile's assumption)")
                     ] = "correlated",
    models: Annotated[str | None, typer.Option(help="comma-separated models to keep")] = None,
    max_budget: Annotated[int | None, typer.Option(min=1, help="keep budgets up to this many tokens")] = None,
    knobs: Annotated[str | None, typer.Option(help='knob filter JSON, e.g. {"checker": ["on"]}')] = None,
    near_front: Annotated[float | None, typer.Option(min=0.0, help=_NEAR_FRONT_HELP)] = None,
    max_candidates: Annotated[int | None, typer.Option(
        min=1, help="cap on candidates when --near-front widens (default 24)")] = None,
    name: Annotated[str | None, typer.Option(help=_NAME_HELP)] = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
) -> None:
    """Search the design space on the proxy → frontier.json + frontier.png."""
    from flowfront.compile.jobs import compile_job, frontier_name

    knob_filter = _compile_options(objective, execution, proxy, knobs)
    settings = make_settings(data_dir, workdir)
    model_list = [m.strip() for m in models.split(",")] if models else None
    path, frontier = compile_job(
        settings, benchmark, objective=objective, execution=execution, mode=proxy,
        models=model_list, max_budget=max_budget, knobs=knob_filter,
        near_front=near_front, max_candidates=max_candidates,
        out_name=name or frontier_name(objective=objective, models=model_list, max_budget=max_budget,
                                       knobs=knob_filter, near_front=near_front,
                                       max_candidates=max_candidates),
    )
    typer.echo(
        f"wrote {path}: {len(frontier.candidates)} candidates from {frontier.space_size:,} configurations "
        f"({frontier.method}, {frontier.search_seconds:.2f}s)"
    )


@app.command()
def validate(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path")],
    n_front: Annotated[
        int, typer.Option(min=2, help="frontier configurations to execute (even spread)")
    ] = 12,
    n_sample: Annotated[int, typer.Option(min=1, help="other configurations, uniform over the space")] = 24,
    seed: Annotated[int, typer.Option()] = 0,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """Execute frontier and sampled configurations; report how well the proxy predicted them."""
    from flowfront.compile.validate import validate_job

    path, r = validate_job(
        make_settings(data_dir, workdir, store=store),
        benchmark,
        n_front=n_front,
        n_sample=n_sample,
        seed=seed,
    )
    hv = r["hypervolume"]["ratio"]
    typer.echo(
        f"{r['benchmark']}: Spearman accuracy {r['accuracy']['spearman']:.3f}, latency "
        f"{r['latency']['spearman']:.3f}; "
        f"Kendall accuracy {r['accuracy']['kendall']:.3f}, latency {r['latency']['kendall']:.3f}; "
        f"frontier recall {r['frontier_recall']:.2f}; hypervolume ratio "
        f"{hv if hv is None else round(hv, 3)}\nwrote {path}"
    )


@app.command()
def train(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path")],
    strategy: Annotated[
        str,
        typer.Option(
            help="frontier | full-space | full-space-factorised | knn | static | "
            "masrouter-style | maas-style | best-single | random"
        ),
    ] = "frontier",
    seed: Annotated[int, typer.Option()] = 0,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """Fit a routing strategy on the train split (after `compile`); LightGBM routers are saved."""
    from flowfront.router.train import train_job

    path, m = train_job(make_settings(data_dir, workdir, store=store), benchmark, strategy, seed=seed)
    typer.echo(
        f"{benchmark} [{strategy}]: {m['train_queries']} train queries x {m['candidates']} candidates, "
        f"fit in {m['fit_seconds']:.1f}s ({m['total_seconds']:.1f}s with outcomes and embeddings); held-out "
        f"expected utility {m['heldout_fold_expected_utility']:.4f} ({m['heldout']})"
        + (_design_line(m) if "design" in m else "")
        + (f"\nwrote {path}" if path else "")
    )


def _design_line(m: dict) -> str:
    if "cv_utility" not in m and "rule" in m:  # too few queries to cross-validate
        return f"\nsuccess design: {m['design']} ({m['rule']}); calibration: {m['calibration']}"
    if "cv_utility" in m:  # chosen by cross-validation over the train split
        cv = m["cv_utility"]
        scores = ", ".join(f"{d} {cv[d]:.4f}" for d in sorted(cv, key=cv.get, reverse=True))
        return (
            f"\nsuccess design: {m['design']} by {len(cv)}-design cross-validated routing utility ({scores}; "
            f"{m['rule']}); calibration: {m['calibration']}"
        )
    designs = sorted(m["valid_utility"], key=m["valid_utility"].get, reverse=True)
    scores = ", ".join(
        f"{d} {m['valid_utility'][d]:.4f} (log-loss {m['valid_log_loss'][d]:.4f})" for d in designs
    )
    return (f"\nsuccess design: {m['design']} won on validation routing utility ({scores}); "
            f"calibration: {m['calibration']}")


@app.command("eval")
def eval_(
    benchmark: Annotated[str, typer.Argument(help="benchmark name or YAML path")],
    strategies: Annotated[str | None, typer.Option(help="comma-separated strategies (default: all)")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per learned strategy")] = 3,
    execution: Annotated[
        str | None, typer.Option(help="parallel | sequential (default: the frontier's)")
    ] = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """Every strategy on the held-out test split (after `compile`): results.json, curves.png, report.md."""
    from flowfront.eval.jobs import eval_job

    if execution not in (None, "parallel", "sequential"):
        raise SpecError(f"unknown execution model {execution!r}", hint="use parallel or sequential")
    names = [s.strip() for s in strategies.split(",") if s.strip()] if strategies else None
    from flowfront.eval.report import refresh_report

    settings = make_settings(data_dir, workdir, store=store)
    path, result = eval_job(
        settings, benchmark, strategies=names, seeds=tuple(range(seeds)), execution=execution
    )
    typer.echo(f"wrote {path}\nwrote {refresh_report(settings.workdir, first=[result['benchmark']])}")


@app.command()
def serve(
    workflows: Annotated[
        Path | None, typer.Option(help="folder of workflow YAMLs to serve (default: the built-in ones)")
    ] = None,
    host: Annotated[
        str, typer.Option(help="bind address; anything but loopback needs FLOWFRONT_API_KEYS")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="worker processes on this port (they share the served-request store; /metrics sums them)",
        ),
    ] = 1,
    explore: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="probability of routing to a candidate "
            "drawn among those within the caller's limits (logged with its propensity; default 0)",
        ),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="replay | litellm (default: FLOWFRONT_BACKEND or replay)")
    ] = None,
    api_base: ApiBase = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """Serve the compiled workflows over HTTP (OpenAI-compatible chat completions included)."""
    from flowfront.service.server import serve as serve_app

    settings = make_settings(data_dir, workdir, backend=backend, api_base=api_base, store=store)
    from flowfront.service.app import service_settings

    config = service_settings(settings)
    if explore is not None:
        config = config.model_copy(update={"explore": explore})
    serve_app(config, workflows or settings.configs_dir / "workflows", host, port, workers=workers)


@app.command()
def run(
    outcomes: Annotated[
        Path | None,
        typer.Option(
            help="an outcome table (docs/outcome-tables.md) to run through "
            "the model-route workflow instead of the built-in benchmarks"
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            help="with --outcomes: the name to serve and ask for it by "
            "(serve, frontier, select, route); saved under <workdir>/own"
        ),
    ] = None,
    benchmarks: Annotated[
        str | None,
        typer.Option(
            help="comma-separated built-in benchmarks (default: qa-cascade,model-route,live-math,live-code)"
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per learned strategy in the evaluation")] = 3,
    strategies: Annotated[
        str | None,
        typer.Option(help="comma-separated strategies to evaluate (default: all; static, best-single and the "
                          "oracle always run)"),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="replay (default: recorded data) | litellm (live models)")
    ] = None,
    api_base: ApiBase = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N queries of each split")] = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
) -> None:
    """The main job: import, profile, compile, validate, train, eval and report."""
    from flowfront.cli.pipeline import DEFAULT_BENCHMARKS, run_main
    from flowfront.router.registry import strategy_entry

    chosen = None
    if strategies is not None:
        chosen = tuple(x.strip() for x in strategies.split(",") if x.strip())
        for x in chosen:
            strategy_entry(x)  # an unknown name fails here, before any work, naming the known ones

    names = tuple(b.strip() for b in benchmarks.split(",") if b.strip()) if benchmarks else DEFAULT_BENCHMARKS
    if name is not None:
        if outcomes is None:
            raise SpecError(
                "--name names an outcome table's benchmark", hint="pass --outcomes FILE with --name"
            )
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
            raise SpecError(f"--name {name!r} is not a usable name",
                            hint="use lower-case letters, digits, - and _ (it becomes a file and URL name)")
    settings = make_settings(
        data_dir, workdir, backend=backend, api_base=api_base, query_limit=limit, store=store
    )
    run_main(settings, names, outcomes=outcomes, seeds=seeds, name=name, strategies=chosen)


def _setup_logging() -> Redactor:
    """One root handler on stderr whose every rendered line is scrubbed of secrets; libraries
    (litellm) route their records through it, so no key reaches the terminal or a log file."""
    import logging

    from flowfront.redact import install_redaction

    redactor = Redactor.from_environment()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    install_redaction(redactor)
    return redactor


def main() -> None:
    """Console entry point."""
    import click

    prepare_environment()
    redactor = _setup_logging()
    try:
        app(standalone_mode=False)
    except FlowfrontError as exc:
        typer.echo(f"error: {redactor.scrub(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except (click.ClickException, TyperException) as exc:
        # typer >= 0.20 raises its own bundled click's exceptions; both are usage errors
        typer.echo(f"error: {redactor.scrub(exc.format_message())} (see `flowfront --help`)", err=True)
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except Exception:  # a bug: show its traceback, scrubbed, since the terminal may be logged
        import traceback

        typer.echo(redactor.scrub(traceback.format_exc()), err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
