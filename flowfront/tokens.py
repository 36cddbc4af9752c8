"""Offline token counting with tiktoken's ``cl100k_base`` encoding.

tiktoken fetches its BPE file from the internet on first use. litellm's wheel ships that file,
so this module points tiktoken's cache at the copy inside the installed litellm package, found
with :func:`importlib.util.find_spec` so that litellm itself (several seconds to import) is never
imported here.

Every count is a ``cl100k_base`` count, whatever model produced or will read the text. That is
exact for the GPT-3.5/GPT-4 family and an approximation for every other model (Claude, Llama,
Mistral, ... use their own tokenizers; counts typically differ by 10-20 %). RouterBench priced
its calls with the same cl100k counts, so its recorded costs are reproduced exactly.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowfront.errors import FlowfrontError, SpecError

if TYPE_CHECKING:
    import tiktoken

ENCODING_NAME = "cl100k_base"
_BPE_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
# tiktoken's cache key for a BPE file is the sha1 of its URL.
_BPE_CACHE_NAME = hashlib.sha1(_BPE_URL.encode()).hexdigest()

# Chat formatting overhead, as counted by OpenAI's chat format for gpt-3.5/gpt-4: every message
# is wrapped in <|start|>{role}<|message|>...<|end|> (3 tokens besides the role and content),
# a `name` field costs one extra token, and the reply is primed with 3 tokens.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3

# tiktoken's batch encoders use a thread pool; more threads than cores only adds contention.
_BATCH_THREADS = max(1, min(4, os.cpu_count() or 1))
# Below this many texts a thread pool costs more than it saves.
_BATCH_MIN = 64


def bundled_bpe_dir() -> Path:
    """The folder inside the installed litellm package that holds tiktoken's BPE files.

    Raises FlowfrontError when litellm is not installed or its wheel lacks the file.
    """
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        raise FlowfrontError(
            "cannot count tokens offline: the litellm package is not installed",
            hint="install flowfront's dependencies (`pip install -e .`); litellm ships the tokenizer file",
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    if not (folder / _BPE_CACHE_NAME).is_file():
        raise FlowfrontError(
            f"cannot count tokens offline: {folder / _BPE_CACHE_NAME} (tiktoken's cl100k_base file) is "
            "missing",
            hint="reinstall litellm (`pip install --force-reinstall litellm`) or copy cl100k_base.tiktoken "
            f"there under the name {_BPE_CACHE_NAME}",
        )
    return folder


@functools.cache
def encoding() -> tiktoken.Encoding:
    """The cached ``cl100k_base`` encoding, loaded from the file bundled with litellm."""
    import tiktoken

    current = os.environ.get("TIKTOKEN_CACHE_DIR")
    # Respect a cache the user set up, as long as it can actually serve the file offline.
    if not current or not (Path(current) / _BPE_CACHE_NAME).is_file():
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled_bpe_dir())
    try:
        return tiktoken.get_encoding(ENCODING_NAME)
    except Exception as exc:  # tiktoken raises requests/OS/Value errors here; all mean the same
        raise FlowfrontError(
            f"cannot load tiktoken's {ENCODING_NAME} encoding from {os.environ['TIKTOKEN_CACHE_DIR']}: {exc}",
            hint="reinstall litellm so its bundled tokenizer file is intact",
        ) from exc


def count_tokens(text: str) -> int:
    """Number of ``cl100k_base`` tokens in ``text`` (special-token strings count as plain text)."""
    return len(encoding().encode_ordinary(text))


def count_tokens_many(texts: Iterable[str]) -> np.ndarray:
    """Token counts of many texts at once, as an int64 array in input order.

    Identical texts are encoded once, which matters for recorded data where thousands of
    responses are the same single letter.
    """
    texts = list(texts)
    unique = list(dict.fromkeys(texts))
    enc = encoding()
    if len(unique) < _BATCH_MIN:
        counts = [len(enc.encode_ordinary(text)) for text in unique]
    else:
        counts = [len(tokens) for tokens in enc.encode_ordinary_batch(unique, num_threads=_BATCH_THREADS)]
    lengths = dict(zip(unique, counts, strict=True))
    return np.fromiter((lengths[text] for text in texts), dtype=np.int64, count=len(texts))


def truncate_tokens(text: str, max_tokens: int | None) -> tuple[str, int, bool]:
    """Cut ``text`` to its first ``max_tokens`` tokens, like a greedy call with that ``max_tokens``.

    Returns ``(text_kept, tokens_kept, was_cut)``. ``max_tokens=None`` means unlimited. When the
    cut falls inside a multi-byte character, the partial character is dropped from the text but
    the token count stays ``max_tokens``: a provider bills every token it generated.
    """
    if max_tokens is None:
        return text, count_tokens(text), False
    if max_tokens < 0:
        raise SpecError(
            f"max_tokens must be >= 0, got {max_tokens}", hint="use None for no limit, or a positive budget"
        )
    tokens = encoding().encode_ordinary(text)
    if len(tokens) <= max_tokens:
        return text, len(tokens), False
    kept = encoding().decode_bytes(tokens[:max_tokens]).decode("utf-8", errors="ignore")
    return kept, max_tokens, True


def _content_text(content: object, index: int) -> str:
    """The text of one message's content: a string, None, or a list of OpenAI text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for part in content:
            if not (isinstance(part, Mapping) and part.get("type") == "text"):
                raise SpecError(
                    f"message {index}: only text content parts can be counted, got {part!r:.80}",
                    hint="pass text-only messages (images and audio have no cl100k token count)",
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise SpecError(
        f"message {index}: content must be a string or a list of text parts, got {type(content).__name__}",
        hint="use OpenAI chat message format: {'role': ..., 'content': ...}",
    )


def count_message_tokens(messages: list[dict[str, Any]]) -> int:
    """Prompt tokens of a chat request: content and role tokens plus the chat-format overhead.

    The overhead follows OpenAI's gpt-3.5/gpt-4 chat format: ``TOKENS_PER_MESSAGE`` (3) per
    message, ``TOKENS_PER_NAME`` (1) when a message has a ``name``, and ``TOKENS_REPLY_PRIMING``
    (3) once for the reply. For other providers it is an approximation, like the count itself.
    """
    texts: list[str] = []
    overhead = TOKENS_REPLY_PRIMING
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise SpecError(
                f"message {index} is a {type(message).__name__}, not a mapping",
                hint="use OpenAI chat message format: {'role': ..., 'content': ...}",
            )
        overhead += TOKENS_PER_MESSAGE
        texts.append(str(message.get("role", "")))
        texts.append(_content_text(message.get("content"), index))
        if message.get("name"):
            overhead += TOKENS_PER_NAME
            texts.append(str(message["name"]))
    return int(count_tokens_many(texts).sum()) + overhead
