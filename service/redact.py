"""Keep secrets out of everything the service writes: responses, logs and traces.

Provider keys come only from the environment. Their exact values (and the service's own API
keys) are scrubbed from error messages, log records and trace rows; common key shapes are
scrubbed too, in case a provider echoes a key the environment does not hold.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping

__all__ = ["Redactor", "install_log_filter"]

_SECRET_NAME = re.compile(r"(API_?KEY|_KEY|TOKEN|SECRET|PASSWORD|CREDENTIALS?)$", re.IGNORECASE)
# Shapes of provider keys: OpenAI/Anthropic-style "sk-...", Hugging Face "hf_...", AWS key ids, Google "AIza...".
_KEY_SHAPES = re.compile(r"\b(?:sk-[A-Za-z0-9_\-]{16,}|hf_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|AIza[0-9A-Za-z_\-]{30,})")
_MASK = "[redacted]"
_MIN_SECRET = 8  # shorter values (e.g. "1", "true") would mask ordinary words


class Redactor:
    """Replaces known secret values and key-shaped strings with ``[redacted]``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)

    @classmethod
    def from_environment(cls, extra: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> Redactor:
        """Secrets are the values of variables named like keys, tokens or passwords, plus ``extra``."""
        env = os.environ if environ is None else environ
        found = [value for name, value in env.items() if _SECRET_NAME.search(name)]
        return cls([*found, *extra])

    def scrub(self, text: str) -> str:
        """``text`` with every secret masked."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return _KEY_SHAPES.sub(_MASK, text) if ("sk-" in text or "hf_" in text or "AKIA" in text
                                                  or "AIza" in text) else text

    def scrub_obj(self, obj: object) -> object:
        """Scrub every string inside nested dicts, lists and tuples."""
        if isinstance(obj, str):
            return self.scrub(obj)
        if isinstance(obj, dict):
            return {k: self.scrub_obj(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.scrub_obj(v) for v in obj)
        return obj


class _ScrubFilter(logging.Filter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        # Scrub the template and each argument in place: formatters (uvicorn's access log) read
        # the arguments themselves, so they must keep their shape.
        scrub = self.redactor.scrub_obj
        record.msg = scrub(record.msg) if isinstance(record.msg, str) else record.msg
        if isinstance(record.args, tuple):
            record.args = tuple(scrub(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = scrub(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def install_log_filter(redactor: Redactor, loggers: Iterable[str]) -> list[tuple[logging.Logger, logging.Filter]]:
    """Attach a scrubbing filter to the named loggers; returns what to remove on shutdown."""
    installed = []
    for name in loggers:
        logger = logging.getLogger(name)
        flt = _ScrubFilter(redactor)
        logger.addFilter(flt)
        installed.append((logger, flt))
    return installed
