"""``flowfront traces``: the served-request log (decisions), retention, and what was served."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from flowfront.cli._common import StoreOpt, Workdir, echo_json, make_settings
from flowfront.errors import SpecError

if TYPE_CHECKING:
    from flowfront.store import TraceStore

traces_app = typer.Typer(no_args_is_help=True, help="The trace stores: the decision log, retention, reports.")

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
Since = Annotated[str, typer.Option("--since", help="how far back: 30m, 1h, 24h, 7d")]
TraceStoreOpt = Annotated[
    str | None,
    typer.Option(
        "--trace-store",
        help="the served-request store URL (default: "
        "FLOWFRONT_TRACE_STORE, else the store when it is PostgreSQL, "
        "else <workdir>/serve/traces.sqlite)",
    ),
]


def parse_span(text: str, option: str = "--since") -> float:
    """Seconds in a span like ``90s``, ``30m``, ``1h``, ``7d``."""
    found = _SPAN.match(text)
    if found is None:
        raise SpecError(
            f"{option} {text!r} is not a time span", hint="use a number and a unit: 30m, 1h, 24h, 7d"
        )
    return float(found.group(1)) * _UNIT_S[found.group(2)]


def _served_store(workdir: Path | None, store: str | None, trace_store: str | None) -> TraceStore:
    from flowfront.store import connect

    settings = make_settings(None, workdir, store=store, trace_store=trace_store)
    url = settings.served_store_url
    if url.engine == "sqlite" and (url.path is None or not url.path.is_file()):
        raise SpecError(
            f"served-request store {url.shown} not found",
            hint="pass --trace-store or --workdir (the service writes <workdir>/serve/traces.sqlite)",
        )
    return connect(url)


@traces_app.command("decisions")
def traces_decisions(
    since: Since = "1h",
    workflow: Annotated[str | None, typer.Option(help="only this workflow")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many (the newest)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON array")] = False,
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """The decision log: one row per served request (what was asked, chosen, estimated, realised)."""
    with _served_store(workdir, store, trace_store) as ts:
        rows = ts.decisions(since=time.time() - parse_span(since), workflow=workflow)
    if limit is not None:
        rows = rows[-limit:]
    if as_json:
        echo_json([d.as_json() for d in rows])
        return
    for d in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.created_at))
        est = (
            d.estimates["accuracy"][d.candidate_index]
            if d.estimates and d.candidate_index is not None
            else None
        )
        typer.echo(f"{when} {d.id} {d.workflow} {d.status} {d.strategy} -> {d.candidate or '-'} "
                   f"(p={d.propensity:.2f}, est. acc {'-' if est is None else f'{est:.3f}'}, "
                   f"lat {d.latency_s if d.latency_s is not None else float('nan'):.3f}s, "
                   f"${d.cost_usd or 0:.6f}){' fallbacks ' + str(len(d.fallbacks)) if d.fallbacks else ''}")
    typer.echo(f"{len(rows)} decisions in the last {since}", err=True)


@traces_app.command("prune")
def traces_prune(
    max_age_days: Annotated[
        float | None, typer.Option(min=0.0, help="delete what is older than this")
    ] = None,
    max_mb: Annotated[
        float | None, typer.Option(min=0.0, help="then delete the oldest until the store is this small")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            help="recorded traces of this source (live, routerbench, ...) instead of served requests"
        ),
    ] = None,
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """Delete old served requests (or recorded traces of one source) and give the space back."""
    from flowfront.store import connect

    if max_age_days is None and max_mb is None:
        raise SpecError("nothing to prune by", hint="pass --max-age-days and/or --max-mb")
    age = max_age_days * 86400 if max_age_days is not None else None
    size = int(max_mb * 1e6) if max_mb is not None else None
    if source is None:
        ts = _served_store(workdir, store, trace_store)
        what = "served requests"
    else:
        ts = connect(make_settings(None, workdir, store=store).store_url)
        what = f"{source} traces"
    with ts:
        removed = (ts.prune_served(max_age_s=age, max_bytes=size) if source is None
                   else ts.prune(source=source, max_age_s=age, max_bytes=size))
        disk = getattr(ts, "file_bytes", ts.size_bytes)()
        typer.echo(f"{ts.url.shown}: removed {removed:,} {what}; {ts.size_bytes() / 1e6:.2f} MB in use, "
                   f"{disk / 1e6:.2f} MB on disk")


@traces_app.command("copy")
def traces_copy(
    source: Annotated[str, typer.Argument(help="the store to copy from (URL or path)")],
    target: Annotated[str, typer.Argument(help="the store to copy into, e.g. postgresql://user@host:5432/db")],
) -> None:
    """Copy recorded calls, datasets and imports from one store into another (SQLite into PostgreSQL)."""
    from flowfront.store import connect

    with connect(source) as src, connect(target) as dst:
        if src.url.shown == dst.url.shown:
            raise SpecError("source and target are the same store", hint="name two different stores")
        counts = src.copy_to(dst)
        typer.echo(
            f"copied {counts['traces']:,} traces, {counts['queries']:,} queries and {counts['imports']} "
            f"imports from {src.url.shown} to {dst.url.shown}"
        )


@traces_app.command("report")
def traces_report(
    since: Since = "24h",
    workflow: Annotated[str | None, typer.Option(help="only this workflow")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
    workdir: Workdir = None,
    store: StoreOpt = None,
    trace_store: TraceStoreOpt = None,
) -> None:
    """What was served: requests per workflow and candidate, realised latency and cost against what
    static selection and the most accurate candidate would have cost (estimated), fallbacks, errors."""
    from flowfront.service.traffic import summarise_traffic

    settings = make_settings(None, workdir, store=store, trace_store=trace_store)
    with _served_store(workdir, store, trace_store) as ts:
        rows = ts.decisions(since=time.time() - parse_span(since), workflow=workflow)
    summary = [t.as_json() for t in summarise_traffic(rows, settings.workdir)]
    if as_json:
        echo_json({"since": since, "workflows": summary})
        return
    if not summary:
        typer.echo(f"no served requests in the last {since}")
        return
    for w in summary:
        r, e = w["realised"], w["estimated"]
        typer.echo(
            f"{w['workflow']}: {w['requests']:,} requests, {w['answered']:,} answered, "
            f"errors {w['errors'] or 'none'}, {w['fallbacks']} fell back, {w['breaker_skips']} breaker skips"
        )
        typer.echo("  candidates: " + ", ".join(f"{c} {n}" for c, n in w["candidates"].items()))
        typer.echo(
            f"  realised: latency mean {_num(r['latency_s_mean'], 's')}, p50 "
            f"{_num(r['latency_s_p50'], 's')}; "
            f"cost ${r['cost_usd_total']:.6f} in all"
        )
        for name in ("served", "static", "most_accurate"):
            part = e[name]
            typer.echo(f"  {name.replace('_', ' ')} (estimated, {part['n']} requests): accuracy "
                       f"{_num(part['accuracy'])}, latency {_num(part['latency_s'], 's')}, "
                       f"cost ${part['cost_usd'] or 0:.6f}/request")


def _num(value: float | None, unit: str = "") -> str:
    return "-" if value is None else f"{value:.3f}{unit}"
