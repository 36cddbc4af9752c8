"""What every CLI command shares: settings built once from options and the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer
from pydantic import ValidationError

from flowfront.errors import SpecError
from flowfront.settings import Settings

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="recorded data (default ../shared/data)")]
Workdir = Annotated[Path | None, typer.Option("--workdir", help="trace store and artifacts (default ./runs)")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="trace store URL: sqlite:///path/traces.sqlite "
        "or postgresql://user@host:5432/db (default: FLOWFRONT_STORE, else "
        "traces.sqlite in the workdir)",
    ),
]
ApiBase = Annotated[
    str | None,
    typer.Option(
        "--api-base",
        help="one OpenAI-compatible base URL for every model "
        "(default: FLOWFRONT_API_BASE, else each local model's server)",
    ),
]


def make_settings(data_dir: Path | None = None, workdir: Path | None = None, **extra: object) -> Settings:
    """Settings from the environment with the given options on top; a bad value is one line that
    names the option or the environment variable it came from."""
    overrides = {
        k: v for k, v in {"data_dir": data_dir, "workdir": workdir, **extra}.items() if v is not None
    }
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "settings"
        where = f"--{name.replace('_', '-')}" if name in overrides else f"FLOWFRONT_{name.upper()}"
        raise SpecError(f"invalid {where}: {err['msg'].removeprefix('Value error, ')}",
                        hint=f"fix {where}" if where.startswith("--") else f"fix or unset {where}") from None


def echo_json(obj: object) -> None:
    typer.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())
