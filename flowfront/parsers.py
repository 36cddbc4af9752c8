"""Output parsers: pure functions from a model's response text to the answer a node keeps.

``llm`` nodes name a parser in their workflow YAML (``parser: choice``); code nodes call these
functions directly. Every parser returns ``None`` when the response holds no usable answer, so a
vote or a comparison can tell "no answer" from a wrong one.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation

__all__ = [
    "PARSERS",
    "extract_choice",
    "extract_code",
    "extract_number",
    "extract_verdict",
    "normalize_text",
    "raw",
]

# --- multiple choice ------------------------------------------------------------------------

# A response that opens with the letter: "B", "B)", "(B)", "B.", "B:", "[B]", "**B**", "D (".
# The letter must not run into a word: "A chart" is the article, not option A.
_LEADING_CHOICE = re.compile(r"^[\s*_\[(]*([A-Z])(?:[\s*_]*$|[\s*_]*[)\].:,;]|\s+[^A-Za-z\s]|[ \t]*\n)")
# "The answer is C", "Answer: (C)", "correct option is B", "choice D".
_PHRASE_CHOICE = re.compile(
    r"\b(?:answer|choice|option)\b(?:\s+(?:is|would\s+be|should\s+be))?\s*[:=]?\s*"
    r"(?:option\s+|choice\s+)?[*_(\[]*([A-Z])\b(?![a-z'])"
)
_PAREN_CHOICE = re.compile(r"\(([A-Z])\)")


def extract_choice(text: str | None, labels: Iterable[str] = "ABCDE") -> str | None:
    """The option letter a response chose, or None when it names none or several.

    Handles "A", "A\\n", " B) wet palms", "(D)", "The answer is C". Only upper-case letters
    count, so an article ("A chart ...") is not read as option A.
    """
    if not text:
        return None
    allowed = set(labels)
    leading = _LEADING_CHOICE.match(text)
    if leading and leading.group(1) in allowed:
        return leading.group(1)
    for pattern in (_PHRASE_CHOICE, _PAREN_CHOICE):
        found = {letter for letter in pattern.findall(text) if letter in allowed}
        if len(found) == 1:
            return str(found.pop())
        if len(found) > 1:
            return None
    return None


# --- numbers --------------------------------------------------------------------------------

_NUMBER = r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+"
_NUMBER_RE = re.compile(rf"(?:{_NUMBER})(?:\s*/\s*(?:{_NUMBER}))?")
_HASH_MARK = re.compile(r"####\s*(.+)")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)\s*:?\s*(.+)", re.IGNORECASE)
_FRAC = re.compile(r"\\d?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
# LaTeX thousands separators: 1{,}000 and 1\\,000.
_THOUSANDS_NOISE = re.compile(r"\{,\}|\\,(?=\d)")
_LATEX_NOISE = re.compile(r"\\(?:text|mathrm|mbox)\s*\{[^{}]*\}|\\[,;!: ]|\\%|\\\$|\\left|\\right|\$")


def _boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}``/``\\fbox{...}``, with nested braces balanced."""
    found = []
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", text):
        depth, start = 1, match.end()
        for index in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            if depth == 0:
                found.append(text[start:index])
                break
    return found


def _canonical_number(token: str) -> str | None:
    """'1,000' -> '1000', '3.50' -> '3.5', '-0.0' -> '0', '3 / 4' -> '3/4'."""
    parts = [part.strip().replace(",", "") for part in token.split("/")]
    try:
        values = [Decimal(part) for part in parts]
    except InvalidOperation:
        return None
    canonical = []
    for value in values:
        rendered = format(value.normalize(), "f")
        canonical.append("0" if rendered in ("-0", "0") else rendered)
    return "/".join(canonical)


def _numbers(fragment: str) -> list[str]:
    """Every number in a fragment after LaTeX fractions, units and separators are cleaned up."""
    fragment = _THOUSANDS_NOISE.sub("", fragment.replace("\u2212", "-"))
    fragment = _LATEX_NOISE.sub(" ", _FRAC.sub(r"\1/\2", fragment))
    return _NUMBER_RE.findall(fragment)


def _first_number(fragment: str) -> str | None:
    numbers = _numbers(fragment)
    return _canonical_number(numbers[0]) if numbers else None


def extract_number(text: str | None) -> str | None:
    """The final numeric answer of a response, normalised for exact comparison.

    Looks, in order, at the last ``\\boxed{...}``, the text after ``####``, the text after
    "answer is"/"answer:", and finally the last number anywhere. Commas, currency, units and
    trailing zeros go: "$1,000.00" -> "1000", "3.50" -> "3.5"; fractions stay "3/4".
    """
    if not text:
        return None
    boxed = _boxed_contents(text)
    if boxed:
        return _first_number(boxed[-1])
    for marker in (_HASH_MARK, _ANSWER_IS):
        matches = marker.findall(text)
        if matches:
            value = _first_number(matches[-1])
            if value is not None:
                return value
    numbers = _numbers(text)
    return _canonical_number(numbers[-1]) if numbers else None


# --- code -----------------------------------------------------------------------------------

_FENCE_OPEN = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n", re.MULTILINE)
_FENCE_CLOSE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)
_PYTHON_TAG = re.compile(r"\[PYTHON\]\n?(.*?)\[/PYTHON\]", re.DOTALL)
_BARE_CODE_START = re.compile(
    r"(?:(?:async\s+)?def|class)\s+\w|import\s+\w|from\s+[\w.]+\s+import\b|@\w+\s*\n|#!"
)


def extract_code(text: str | None) -> str | None:
    """The first complete code block of a response, or None.

    A block is a fenced block (any language tag or none), a ``[PYTHON]...[/PYTHON]`` span, or
    the whole response when it starts with ``def``/``import``/``from``/``class``. A fence that is
    opened and never closed means the output was cut off, so the code is incomplete: None.
    """
    if not text:
        return None
    text = text.replace("\r\n", "\n")  # some models answer with CRLF line ends
    candidates: list[tuple[int, str | None]] = []
    opened = _FENCE_OPEN.search(text)
    if opened:
        closed = _FENCE_CLOSE.search(text, opened.end())
        candidates.append((opened.start(), text[opened.end() : closed.start()] if closed else None))
    tagged = _PYTHON_TAG.search(text)
    if tagged:
        candidates.append((tagged.start(), tagged.group(1)))
    elif "[PYTHON]" in text:
        candidates.append((text.index("[PYTHON]"), None))
    if candidates:
        code = min(candidates, key=lambda candidate: candidate[0])[1]
        if code is None:
            return None
        return code.strip("\n").rstrip() or None
    stripped = text.strip()
    return _bare_code(stripped) if _BARE_CODE_START.match(stripped) else None


def _bare_code(text: str) -> str:
    """The longest prefix of an unfenced response that is valid Python.

    Unfenced answers often trail off into prose ("This function works by ..."); cutting at the
    last top-level line that still compiles keeps the code and drops the explanation. Compiling
    only parses, it never runs the code.
    """
    lines = text.split("\n")
    cuts = [index for index, line in enumerate(lines) if line[:1] not in ("", " ", "\t")][1:]
    for cut in [len(lines), *reversed(cuts)]:
        chunk = "\n".join(lines[:cut]).rstrip()
        try:
            compile(chunk, "<response>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            continue
        return chunk
    return text


# --- verdicts -------------------------------------------------------------------------------

_VERDICT_LINE = re.compile(r"verdict\s*[:=]?\s*\**\s*(incorrect|correct|wrong|right)\b", re.IGNORECASE)
_VERDICT_WORD = re.compile(r"\b(incorrect|correct)\b", re.IGNORECASE)
_VERDICT_SYNONYMS = {"wrong": "incorrect", "right": "correct"}


def extract_verdict(text: str | None) -> str | None:
    """A checker's judgement: "correct", "incorrect", or None when it gives none.

    The last "VERDICT: ..." wins; without one, a lone "correct"/"incorrect" on the final line
    counts, since a checker that was told the format usually ends with its judgement.
    """
    if not text:
        return None
    marked = _VERDICT_LINE.findall(text)
    if marked:
        word = str(marked[-1]).lower()
        return _VERDICT_SYNONYMS.get(word, word)
    lines = [line for line in text.strip().splitlines() if line.strip()]
    words = {word.lower() for word in _VERDICT_WORD.findall(lines[-1])} if lines else set()
    return words.pop() if len(words) == 1 else None


# --- free text ------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_text(text: str | None) -> str:
    """Text for exact-match comparison: lower case, no punctuation, no articles, single spaces."""
    if not text:
        return ""
    lowered = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", lowered).split())


def raw(text: str | None) -> str | None:
    """The response unchanged (the identity parser)."""
    return text


PARSERS: dict[str, Callable[[str | None], str | None]] = {
    "raw": raw,
    "choice": extract_choice,
    "number": extract_number,
    "code": extract_code,
    "verdict": extract_verdict,
    "text": normalize_text,
}
