"""Output parsers, on hand-written cases and on the real RouterBench responses."""

from __future__ import annotations

import ast
import csv
import os
from pathlib import Path

import pytest

from flowfront.parsers import (
    PARSERS,
    extract_choice,
    extract_code,
    extract_number,
    extract_verdict,
    normalize_text,
)

DATA_DIR = Path(os.environ.get("FLOWFRONT_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
ROUTERBENCH = DATA_DIR / "routerbench"
needs_data = pytest.mark.skipif(not ROUTERBENCH.is_dir(), reason=f"recorded data not found at {ROUTERBENCH}")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A", "A"),
        ("A\n", "A"),
        (" B) wet palms", "B"),
        ("(D)", "D"),
        ("D (", "D"),
        ("A.", "A"),
        ("**C**", "C"),
        ("The answer is C", "C"),
        ("Answer: (B)", "B"),
        ("The correct option is D because", "D"),
        ("A chart", None),  # the article, not option A
        ("I do not know", None),
        ("Unfortunately I cannot", None),
        ("", None),
        (None, None),
        ("between (A) and (B)", None),  # two different letters: ambiguous
        ("G\n", None),  # not an offered label
    ],
)
def test_extract_choice(text, expected):
    assert extract_choice(text, "ABCDE") == expected


def test_extract_choice_respects_labels():
    assert extract_choice("C", labels="AB") is None
    assert extract_choice("B", labels=["A", "B"]) == "B"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### 42", "42"),
        ("so the total is 7.\n#### 1,000", "1000"),
        ("\\boxed{42}", "42"),
        ("x = \\boxed{\\frac{3}{4}}", "3/4"),
        ("\\boxed{\\dfrac{1}{2}} or 7", "1/2"),
        ("The answer is 42.", "42"),
        ("It costs $1,000.00 in total.", "1000"),
        ("3.50", "3.5"),
        ("-0.0", "0"),
        ("The answer is \u22125", "-5"),
        ("1{,}200 apples", "1200"),
        ("Total: 50%", "50"),
        ("First 3, then 8 and finally 12 cm", "12"),
        ("answer: 12 apples and 3 pears", "12"),
        ("\\boxed{\\text{(A)}}", None),
        ("no number", None),
        (None, None),
    ],
)
def test_extract_number(text, expected):
    assert extract_number(text) == expected


def test_extract_code_fenced_with_any_tag_or_none():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone.") == "def f():\n    return 1"
    assert extract_code("```\nx = 1\n```") == "x = 1"
    assert extract_code("```js\nlet x = 1;\n```\n```python\ny = 2\n```") == "let x = 1;"
    # CRLF line ends (one RouterBench model answers with them) still close the fence.
    assert extract_code("Sure:\r\n```python\r\ndef g():\r\n    pass\r\n```\r\n") == "def g():\n    pass"


def test_extract_code_tags_bare_and_incomplete():
    tagged = " \n[PYTHON]\ndef h(n):\n    return n\n[/PYTHON]\n[TESTS]\nassert h(1) == 1\n[/TESTS]\n"
    assert extract_code(tagged) == "def h(n):\n    return n"
    bare = "def area(r):\n    return 3.14 * r * r\n\nThis function multiplies pi by r squared."
    assert extract_code(bare) == "def area(r):\n    return 3.14 * r * r"
    assert extract_code("import math\nprint(math.pi)") == "import math\nprint(math.pi)"
    assert extract_code("Here:\n```python\ndef f():\n    return [1, 2") is None  # cut off mid-block
    assert extract_code("[PYTHON]\ndef f():\n    pass") is None
    assert extract_code("from the data we can see that") is None
    assert extract_code("The lateral surface area of a cone is pi r l.") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Step 2 is fine.\nVERDICT: CORRECT", "correct"),
        ("VERDICT: CORRECT\n...on reflection...\nVerdict: **incorrect**", "incorrect"),
        ("verdict = wrong", "incorrect"),
        ("All steps check out. Correct.", "correct"),
        ("Is it correct or incorrect? Hard to say", None),
        ("The arithmetic in step 3 is off.", None),
        ("", None),
    ],
)
def test_extract_verdict(text, expected):
    assert extract_verdict(text) == expected


def test_normalize_text_and_registry():
    assert normalize_text("The  Quick, brown fox!  An apple") == "quick brown fox apple"
    assert normalize_text(None) == ""
    assert {"raw", "choice", "number", "code", "verdict", "text"} <= set(PARSERS)
    assert PARSERS["raw"]("  keep me \n") == "  keep me \n"
    assert PARSERS["number"]("#### 7") == "7"


def _routerbench(stem: str) -> tuple[list[str], list[dict[str, str]]]:
    rows = []
    for split in ("train", "test"):
        with (ROUTERBENCH / f"{stem}_{split}.csv").open(newline="", encoding="utf-8") as handle:
            rows.extend(csv.DictReader(handle))
    models = [column[: -len("|model_response")] for column in rows[0] if column.endswith("|model_response")]
    return models, rows


def _response(row: dict[str, str], model: str) -> str:
    return ast.literal_eval(row[model + "|model_response"])[0]


@needs_data
@pytest.mark.parametrize(("stem", "labels"), [("arc_challenge", "ABCDE"), ("winogrande", "AB")])
def test_choice_agrees_with_recorded_correctness(stem, labels):
    models, rows = _routerbench(stem)
    parsed_correct = total_correct = 0
    for row in rows:
        correct = [extract_choice(_response(row, m), labels) for m in models if row[m] == "1.0"]
        wrong = [extract_choice(_response(row, m), labels) for m in models if row[m] == "0.0"]
        letters = {letter for letter in correct if letter}
        # Every correct response that parses names the same letter, and no wrong one names it.
        assert len(letters) <= 1, (row["sample_id"], correct)
        assert not letters & set(wrong), (row["sample_id"], correct, wrong)
        total_correct += len(correct)
        parsed_correct += len([letter for letter in correct if letter])
    assert parsed_correct >= 0.999 * total_correct


@needs_data
def test_code_is_found_in_correct_mbpp_responses_and_compiles():
    models, rows = _routerbench("mbpp")
    correct = [_response(row, m) for row in rows for m in models if row[m] == "1.0"]
    codes = [extract_code(text) for text in correct]
    found = [code for code in codes if code is not None]
    assert len(found) >= 0.99 * len(correct)
    # A few correct answers are JavaScript or C++ blocks, which do not compile as Python.
    assert sum(map(_compiles, found)) >= 0.99 * len(found)


def _compiles(code: str) -> bool:
    try:
        compile(code, "<mbpp>", "exec")
    except SyntaxError:
        return False
    return True
