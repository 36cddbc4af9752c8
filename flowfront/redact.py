"""Keep secrets out of everything flowfront writes: log lines, terminal errors, traces, responses.

Provider keys come only from the environment. Their exact values (plus the service's own API
keys) and the common key shapes (a provider may echo a key the environment does not hold) are
replaced by ``[redacted]``.

Redaction sits where it cannot be bypassed: :class:`RedactingFormatter` scrubs the *final*
rendered log line (message, arguments of any type, exception, traceback and stack all
included), and the trace store scrubs every row it writes. Scrubbing individual arguments is not
enough: an exception object passed as an argument is rendered by the formatter, after any filter.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import TypeVar, cast

_T = TypeVar("_T")

__all__ = ["Redactor", "RedactingFormatter", "install_redaction"]

_SECRET_NAME = re.compile(r"(API_?KEY|_KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$", re.IGNORECASE)
# Shapes of provider keys: OpenAI/Anthropic-style "sk-...", Hugging Face "hf_...", AWS key ids,
# Google "AIza...", and a bearer token in an echoed header.
_KEY_SHAPES = re.compile(
    r"\b(?:sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,})"
    r"|(?<=Bearer )[A-Za-z0-9_\-.=]{20,}"
    # a provider's masked echo of a key ("sk-proj-****...****abcd"): what is left still names the key
    r"|\bsk-[A-Za-z0-9_\-]{0,12}[*\u2022]{4,}[A-Za-z0-9_\-]{0,8}"
)
_MASK_RUN = r"(?:[*\u2022xX]{3,}|\.{3})"
_SHAPE_PREFIXES = ("sk-", "hf_", "AKIA", "AIza", "Bearer ")
_MASK = "[redacted]"
_MIN_SECRET = 8  # shorter values (e.g. "1", "true") would mask ordinary words


class Redactor:
    """Replaces known secret values and key-shaped strings with ``[redacted]``.

    >>> Redactor(["s3cret-value"]).scrub("key s3cret-value and sk-" + "a" * 20)
    'key [redacted] and [redacted]'
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        # Providers echo a key masked: its first 8 (or 3) and last 4 characters around a run of
        # '*' or '...'. Those are masked too: together they identify the key.
        masked = [f"{re.escape(s[:k])}{_MASK_RUN}{re.escape(s[-4:])}" for s in self.secrets if len(s) >= 16
                  for k in (8, 3)]
        self._masked = re.compile("|".join(masked)) if masked else None

    @classmethod
    def from_environment(
        cls, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None
    ) -> Redactor:
        """Secrets are the values of variables named like keys, tokens or passwords, plus ``extra``."""
        env = os.environ if environ is None else environ
        found = [value for name, value in env.items() if _SECRET_NAME.search(name)]
        return cls([*found, *extra])

    def scrub(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        if self._masked is not None and ("*" in text or "..." in text or "\u2022" in text):
            text = self._masked.sub(_MASK, text)
        if any(prefix in text for prefix in _SHAPE_PREFIXES):
            text = _KEY_SHAPES.sub(_MASK, text)
        return text

    def scrub_obj(self, obj: _T) -> _T:
        """Scrub every string inside nested dicts, lists and tuples (same shape and types back)."""
        if isinstance(obj, str):
            return cast(_T, self.scrub(obj))
        if isinstance(obj, dict):
            return cast(_T, {k: self.scrub_obj(v) for k, v in obj.items()})
        if isinstance(obj, (list, tuple)):
            return cast(_T, type(obj)(self.scrub_obj(v) for v in obj))
        return obj


class RedactingFormatter(logging.Formatter):
    """Wraps a handler's formatter and scrubs the line it renders, whatever went into it."""

    def __init__(self, inner: logging.Formatter | None, redactor: Redactor) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.scrub(self.inner.format(record))


def install_redaction(redactor: Redactor) -> list[tuple[logging.Handler, logging.Formatter | None]]:
    """Wrap the formatter of every handler that exists now (root and named loggers).

    Call it again after a library adds handlers of its own (litellm does at import); handlers
    already wrapped are left alone. Returns what to restore on shutdown.
    """
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    changed = []
    for logger in loggers:
        for handler in logger.handlers:
            current = handler.formatter
            if isinstance(current, RedactingFormatter):
                continue
            handler.setFormatter(RedactingFormatter(current, redactor))
            changed.append((handler, current))
    return changed


def uninstall_redaction(changed: list[tuple[logging.Handler, logging.Formatter | None]]) -> None:
    """Undo :func:`install_redaction` (tests build many apps in one process)."""
    for handler, formatter in changed:
        handler.setFormatter(formatter)
