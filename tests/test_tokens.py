"""Offline cl100k token counting: counts, batch counts, truncation, chat overhead, no litellm import."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from flowfront import tokens
from flowfront.errors import FlowfrontError, SpecError
from flowfront.tokens import count_message_tokens, count_tokens, count_tokens_many, truncate_tokens


def test_counts_known_strings():
    assert count_tokens("") == 0
    assert count_tokens("hello world") == 2
    # Special-token text is counted as ordinary text instead of raising.
    assert count_tokens("<|endoftext|>") > 1


def test_many_matches_single_counts_in_order_including_repeats():
    texts = [f"answer number {index} " * (index % 7) for index in range(150)] + ["A", "A", "B\n"]
    counts = count_tokens_many(texts)
    assert counts.dtype == np.int64
    assert counts.tolist() == [count_tokens(text) for text in texts]
    assert count_tokens_many([]).shape == (0,)


def test_truncate_unlimited_and_short_text_are_not_cut():
    text = "The quick brown fox jumps over the lazy dog."
    n = count_tokens(text)
    assert truncate_tokens(text, None) == (text, n, False)
    assert truncate_tokens(text, n) == (text, n, False)
    assert truncate_tokens(text, n + 10) == (text, n, False)


def test_truncate_keeps_a_prefix_of_exactly_the_budget():
    text = "def add(a, b):\n    return a + b\n\nprint(add(1, 2))\n" * 5
    kept, n_kept, cut = truncate_tokens(text, 7)
    assert cut and n_kept == 7
    assert text.startswith(kept) and count_tokens(kept) == 7
    assert truncate_tokens(text, 0) == ("", 0, True)


def test_truncate_inside_a_multibyte_character_drops_the_partial_character():
    text = "🙂🙂🙂 emoji"  # each emoji spans several cl100k tokens
    for budget in range(1, count_tokens(text)):
        kept, n_kept, cut = truncate_tokens(text, budget)
        assert cut and n_kept == budget
        assert text.startswith(kept) and "\ufffd" not in kept


def test_truncate_rejects_negative_budget():
    with pytest.raises(SpecError, match="max_tokens"):
        truncate_tokens("text", -1)


def test_message_overhead_is_documented_constants():
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hi"}]
    content = sum(count_tokens(m["role"]) + count_tokens(m["content"]) for m in messages)
    expected = content + 2 * tokens.TOKENS_PER_MESSAGE + tokens.TOKENS_REPLY_PRIMING
    assert count_message_tokens(messages) == expected
    named = [{**messages[1], "name": "bob"}]
    assert count_message_tokens(named) == (
        count_tokens("user")
        + count_tokens("Say hi")
        + count_tokens("bob")
        + tokens.TOKENS_PER_MESSAGE
        + tokens.TOKENS_PER_NAME
        + tokens.TOKENS_REPLY_PRIMING
    )


def test_message_text_parts_count_like_a_string_and_images_are_refused():
    as_string = [{"role": "user", "content": "two parts"}]
    as_parts = [
        {"role": "user", "content": [{"type": "text", "text": "two"}, {"type": "text", "text": " parts"}]}
    ]
    assert count_message_tokens(as_parts) == count_message_tokens(as_string)
    assert count_message_tokens([{"role": "assistant", "content": None}]) == (
        count_tokens("assistant") + tokens.TOKENS_PER_MESSAGE + tokens.TOKENS_REPLY_PRIMING
    )
    with pytest.raises(SpecError, match="message 0"):
        count_message_tokens(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]
        )
    with pytest.raises(SpecError, match="message 1"):
        count_message_tokens([{"role": "user", "content": "ok"}, "not a message"])


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "TIKTOKEN_CACHE_DIR"}
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=60
    )


@pytest.mark.slow  # starts a subprocess or a server
def test_works_offline_without_importing_litellm_even_with_a_useless_user_cache(tmp_path):
    code = (
        "import sys\n"
        "from flowfront.tokens import count_tokens\n"
        "assert count_tokens('hello world') == 2\n"
        "assert 'litellm' not in sys.modules, 'litellm was imported'\n"
    )
    assert _run_python(code).returncode == 0
    # A TIKTOKEN_CACHE_DIR without the file must not send tiktoken to the network.
    result = _run_python(code, TIKTOKEN_CACHE_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr


def test_missing_litellm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "litellm", None)  # find_spec reports a blocked module as absent
    with pytest.raises(FlowfrontError, match="litellm package is not installed"):
        tokens.bundled_bpe_dir()
