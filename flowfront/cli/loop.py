"""Learning from served traffic: ``feedback import``, ``grade``, ``retrain``, ``drift``, ``router``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from flowfront.cli._common import ApiBase, DataDir, StoreOpt, Workdir, echo_json, make_settings
from flowfront.cli.traces import Since, TraceStoreOpt, parse_span
from flowfront.errors import SpecError

feedback_app = typer.Typer(no_args_is_help=True, help="Grades for served responses.")
router_app = typer.Typer(no_args_is_help=True, help="The serving router's versions: list, roll back.")
Benchmark = Annotated[str, typer.Argument(help="the workflow's benchmark (its artifacts' folder)")]


@feedback_app.command("import")
def feedback_import(
    path: Annotated[Path, typer.Argument(help="CSV (id,name,value,label,comment) or JSON lines")],
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """Record batch grades the way POST /v1/feedback does (latest per response and name)."""
    from flowfront.grades import import_feedback, read_feedback_file
    from flowfront.store import connect

    grades = read_feedback_file(path)
    settings = make_settings(None, workdir, store=store, trace_store=trace_store)
    with connect(settings.served_store_url) as served:
        recorded, unknown = import_feedback(served, grades)
    typer.echo(f"{path}: recorded {recorded:,} grades in {settings.served_store_url.shown}")
    if unknown:
        shown = ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        typer.echo(f"{len(unknown):,} rows name responses that were never served here or have been pruned, "
                   f"not recorded: {shown}", err=True)


@feedback_app.command("list")
def feedback_list(
    since: Since = "24h",
    name: Annotated[str | None, typer.Option(help="only grades of this name")] = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """The grades recorded (as JSON)."""
    from flowfront.store import connect

    settings = make_settings(None, workdir, store=store, trace_store=trace_store)
    with connect(settings.served_store_url) as served:
        rows = served.feedback(name=name, since=time.time() - parse_span(since))
    echo_json([f.as_json() for f in rows])


def grade(
    workflow: Annotated[
        str, typer.Argument(help="the served workflow (or its benchmark) whose answers to grade")
    ],
    judge: Annotated[
        str | None,
        typer.Option(
            help="model for the LLM judge (a model card or litellm route); "
            "without it only answers with a reference are graded"
        ),
    ] = None,
    sample: Annotated[float, typer.Option(min=0.0, max=1.0, help="share of served answers to grade")] = 0.05,
    since: Since = "7d",
    api_base: ApiBase = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """Grade a sample of served answers (by reference, else an LLM judge); writes feedback `judge`."""
    from flowfront.benchmarks import Benchmark as Bench
    from flowfront.benchmarks import list_benchmarks, load_benchmark, load_workflow_arg
    from flowfront.grading import grade_decisions, references_for
    from flowfront.runtime import load_cards, make_backend, open_store
    from flowfront.store import connect

    settings = make_settings(None, workdir, store=store, trace_store=trace_store, api_base=api_base)
    wf = load_workflow_arg(workflow, settings.configs_dir, own_dir=settings.workspace.own)
    benches: list[Bench] = [
        b
        for b in (
            load_benchmark(n, settings.configs_dir, own_dir=settings.workspace.own)
            for n in list_benchmarks(settings.configs_dir, settings.workspace.own)
        )
        if b.workflow.name == wf.name
    ]
    with open_store(settings) as main, connect(settings.served_store_url) as served:
        references: dict[str, str] = {}
        for b in benches:
            source = b.spec.data.source
            references |= references_for(
                main, source if source not in ("outcomes",) else f"outcomes-{b.name}"
            )
        decisions = served.decisions(since=time.time() - parse_span(since), workflow=wf.name)
        backend = None
        if judge is not None:
            backend = make_backend("litellm", main, load_cards(settings), settings, models=[judge])
        match = benches[0].spec.match if benches else "exact"
        report = grade_decisions(served, wf, decisions, sample=sample, references=references, match=match,
                                 backend=backend, judge_model=judge)
    typer.echo(f"{wf.name}: {report.sampled} sampled of {len(decisions)} served in the last {since}; "
               f"{report.already} already graded, {report.by_reference} by reference, {report.by_judge} by "
               f"{judge or 'no judge'}, {report.unparsed} judge replies unreadable")


def retrain(
    benchmark: Benchmark,
    since: Annotated[str | None, typer.Option(help="only decisions this recent (default: all kept)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="compare and report, never promote")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    data_dir: DataDir = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """Fit a challenger on the outcome matrix plus graded decisions; promote it only on evidence."""
    from flowfront.router.retrain import retrain_job

    settings = make_settings(data_dir, workdir, store=store, trace_store=trace_store)
    report = retrain_job(settings, benchmark, since_s=None if since is None else parse_span(since), seed=seed,
                         dry_run=dry_run)
    if as_json:
        echo_json(report)
        return
    dr = report["offpolicy"]["difference"]["dr"]
    off = report["offline"]["difference"]
    typer.echo(f"{benchmark}: {'promoted the challenger' if report['promoted'] else 'kept the champion'} "
               f"({report['reason']})\n  doubly robust difference on {report['held_out']} held-out decisions "
               f"{dr['value']:+.4f} [{dr['low']:+.4f}, {dr['high']:+.4f}]; offline {off['value']:+.4f} "
               f"[{off['low']:+.4f}, {off['high']:+.4f}]\nwrote {report['report']}")


def drift(
    workflow: Annotated[str, typer.Argument(help="the served workflow")],
    since: Since = "1h",
    psi: Annotated[float, typer.Option(help="alarm above this task-mix PSI")] = 0.25,
    ood_share: Annotated[float, typer.Option(help="alarm above this out-of-distribution share")] = 0.10,
    ece: Annotated[float, typer.Option(help="alarm above this calibration error")] = 0.10,
    latency_ratio: Annotated[
        float, typer.Option(help="alarm beyond this realised/predicted latency factor")
    ] = 1.5,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """Drift of served traffic against the router's training: task mix, OOD share, calibration, latency."""
    from flowfront.errors import FlowfrontError
    from flowfront.router.artifact import read_artifact
    from flowfront.service.drift import DriftThresholds, drift_report
    from flowfront.store import connect

    settings = make_settings(None, workdir, store=store, trace_store=trace_store)
    try:
        mix = read_artifact(settings.workspace.benchmark(workflow).router()).validation_metrics.get(
            "group_mix"
        )
    except FlowfrontError:
        mix = None  # no router here: the mix is not compared
    with connect(settings.served_store_url) as served:
        decisions = served.decisions(since=time.time() - parse_span(since), workflow=workflow)
        feedback = served.feedback(ids=[d.id for d in decisions]) if decisions else []
    report = drift_report(decisions, feedback, mix, DriftThresholds(psi, ood_share, ece, latency_ratio))
    if as_json:
        echo_json(report)
        return
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731 - one-line formatter
    alarms = [k for k, on in report["alarms"].items() if on]
    typer.echo(
        f"{workflow}, last {since}: {report['routed']} routed requests; task-mix PSI "
        f"{fmt(report['mix']['psi'])}, "
        f"OOD share {fmt(report['ood_share'])}, calibration ECE {fmt(report['calibration']['ece'])} "
        f"({report['calibration']['graded']} graded), latency realised/predicted "
        f"{fmt(report['latency_ratio_median'])}; alarms: {', '.join(alarms) or 'none'}"
    )


@router_app.command("versions")
def router_versions_cmd(benchmark: Benchmark, workdir: Workdir = None) -> None:
    """The kept router versions, oldest first; the serving one marked."""
    from flowfront.router.artifact import router_versions

    settings = make_settings(None, workdir)
    for v in router_versions(settings.workspace.benchmark(benchmark).router()):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(v["at"]))
        typer.echo(f"{'*' if v['current'] else ' '} {v['version']}  {when}  {v['note']}")


@router_app.command("rollback")
def router_rollback(
    benchmark: Benchmark,
    to: Annotated[
        str | None,
        typer.Option(help="a version from `flowfront router versions` (default: the one before the current)"),
    ] = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """Serve an earlier router again; every replica sharing the served-request store picks it up."""
    from flowfront.router.artifact import rollback_router
    from flowfront.store import connect

    settings = make_settings(None, workdir, store=store, trace_store=trace_store)
    folder = settings.workspace.benchmark(benchmark).router()
    if not folder.exists():
        raise SpecError(
            f"no router for {benchmark!r} under {settings.workdir}", hint="run `flowfront train` first"
        )
    version = rollback_router(folder, to)
    with connect(settings.served_store_url) as served:
        generation = served.bump_generation()
    typer.echo(
        f"{benchmark}: serving router {version} again (generation {generation}; replicas reload within "
        "seconds)"
    )
