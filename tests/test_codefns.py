from flowfront.codefns import agree, coalesce, majority_vote
from flowfront.values import Value


def v(answer, score=None, call=0):
    return Value(answer=answer, score=score, calls=(call,))


def test_majority_vote_picks_majority_and_keeps_its_grade() -> None:
    out = majority_vote([v("A", 0.0, 0), v("B", 1.0, 1), v("B", 1.0, 2)])
    assert out.answer == "B" and out.score == 1.0 and out.calls == (1,)


def test_majority_vote_without_majority_takes_first_sample() -> None:
    assert majority_vote([v("C", 0.0, 0), v("A", 1.0, 1), v("B", 0.0, 2)]).calls == (0,)
    # a tie between two answers is no majority either
    assert majority_vote([v("A", 1.0, 0), v("B", 0.0, 1), v("B", 0.0, 2), v("A", 1.0, 3)]).calls == (0,)


def test_majority_vote_ignores_unparsed_samples() -> None:
    assert majority_vote([v(None, 0.0, 0), v("A", 1.0, 1), v("A", 1.0, 2)]).answer == "A"


def test_agree_and_coalesce() -> None:
    assert agree(v("A"), v("A")).answer is True
    assert agree(v("A"), v("B")).answer is False
    assert agree(v(None), v(None)).answer is False
    assert coalesce(None, v("B")).answer == "B"
    assert coalesce(v("C"), v("B")).answer == "C"


def test_first_passing_takes_the_first_graded_pass() -> None:
    from flowfront.codefns import first_passing

    assert first_passing([v("x", 0.0, 0), v("y", 1.0, 1), v("z", 1.0, 2)]).calls == (1,)
    assert first_passing([v("x", None, 0), v("y", None, 1)]).calls == (0,)  # live: nothing graded yet
