"""Store URLs: which engine a trace store uses and where it lives.

``sqlite:///abs/path/traces.sqlite`` (or a bare path) is a SQLite file; ``postgresql://user:pw@host:5432/db``
(``postgres://`` too) is a PostgreSQL database. :attr:`StoreURL.shown` is the URL without its
password: the only form that may reach a log line, an error or ``/readyz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from flowfront.errors import StoreError

__all__ = ["StoreURL", "parse_store_url"]

Engine = Literal["sqlite", "postgresql"]


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``raw`` carries credentials: pass it to the driver, never print it."""

    engine: Engine
    raw: str
    path: Path | None = None  # the SQLite file
    password: str | None = None

    @property
    def shown(self) -> str:
        """The URL with its password removed."""
        if self.engine == "sqlite":
            return f"sqlite://{self.path}"
        parts = urlsplit(self.raw)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal
            host = f"[{host}]"
        netloc = (
            (f"{parts.username}@" if parts.username else "") + host + (f":{parts.port}" if parts.port else "")
        )
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def __str__(self) -> str:
        return self.shown

    def __repr__(self) -> str:
        return f"StoreURL({self.shown!r})"


def parse_store_url(value: str | Path) -> StoreURL:
    """A :class:`StoreURL` from ``sqlite://…``, ``postgresql://…`` or a plain file path."""
    text = str(value).strip()
    if not text:
        raise StoreError("the store URL is empty", hint="pass sqlite:///path/traces.sqlite or postgresql://user@host/db")
    scheme, sep, rest = text.partition("://")
    if not sep:
        return StoreURL("sqlite", text, path=Path(text).expanduser().resolve())
    scheme = scheme.lower()
    if scheme == "sqlite":
        # sqlite:///abs/path and sqlite:////abs/path both name /abs/path; sqlite://rel/path is relative
        path = "/" + rest.lstrip("/") if rest.startswith("/") else rest
        if not path:
            raise StoreError(f"store URL {text!r} names no file", hint="e.g. sqlite:///path/traces.sqlite")
        return StoreURL("sqlite", text, path=Path(path).expanduser().resolve())
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        parts = urlsplit(text)
        if not parts.hostname and "host=" not in (parts.query or ""):
            raise StoreError(f"store URL {_without_password(text)} names no host",
                             hint="e.g. postgresql://flowfront@127.0.0.1:5432/flowfront")
        raw = "postgresql://" + text.split("://", 1)[1]
        return StoreURL("postgresql", raw, password=parts.password)
    raise StoreError(f"store URL scheme {scheme!r} is not supported",
                     hint="use sqlite:///path/traces.sqlite or postgresql://user@host:5432/db")


def _without_password(text: str) -> str:
    parts = urlsplit(text)
    if parts.password is None:
        return text
    return text.replace(f":{parts.password}@", "@", 1)
