import pytest

from flowfront.errors import SpecError
from flowfront.space import Configuration, call_slots, resolve, space_size
from flowfront.spec import load_workflow
from tests.helpers import CONFIGS


@pytest.fixture(scope="module")
def cascade():
    return load_workflow(CONFIGS / "workflows" / "qa-cascade.yaml")


@pytest.fixture(scope="module")
def vote():
    return load_workflow(CONFIGS / "workflows" / "qa-vote.yaml")


def test_space_sizes(cascade, vote) -> None:
    assert space_size(cascade) == 11**3 + 11  # checker on: answer x check x escalate; off: answer
    assert space_size(vote) == 11 + 11**3 + 11**5
    code = load_workflow(CONFIGS / "workflows" / "code-budget.yaml")
    assert space_size(code) == 11 * 6


def test_checker_off_needs_only_answer(cascade) -> None:
    assert call_slots(cascade, {"checker": "off"}) == {"answer": 1}
    resolved = resolve(
        cascade,
        Configuration.parse({"knobs": {"checker": "off"}, "nodes": {"answer": {"model": "claude-v2"}}}),
    )
    assert set(resolved.slots) == {"answer"}


def test_per_call_settings_and_broadcast(vote) -> None:
    models = ["gpt-4-1106-preview", "claude-v2", "claude-v1"]
    per_call = resolve(
        vote, Configuration.parse({"knobs": {"k": 3}, "nodes": {"answer": [{"model": m} for m in models]}})
    )
    assert [s.model for s in per_call.slots["answer"]] == models
    broadcast = resolve(
        vote, Configuration.parse({"knobs": {"k": 5}, "nodes": {"answer": {"model": "claude-v2"}}})
    )
    assert len(broadcast.slots["answer"]) == 5


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            {"nodes": {"answer": {"model": "nope"}}, "knobs": {"checker": "off"}},
            "model 'nope' is not in its choices",
        ),
        ({"nodes": {"answer": {"model": "claude-v2"}, "bogus": {"model": "x"}}}, "unknown node 'bogus'"),
        (
            {"nodes": {"answer": {"model": "claude-v2", "budget": 99}}, "knobs": {"checker": "off"}},
            "budget 99 is outside",
        ),
        ({"nodes": {"answer": {"model": "claude-v2"}}, "knobs": {"checker": "maybe"}}, "outside the space"),
        ({"nodes": {"answer": {"model": "claude-v2"}}}, "no setting for node 'check'"),
        ({"nodes": {"answer": {"modle": "claude-v2"}}}, "nodes.answer"),
    ],
)
def test_bad_configurations(cascade, config, expected) -> None:
    with pytest.raises(SpecError, match=expected.replace("(", r"\(")):
        resolve(cascade, Configuration.parse(config))


def test_list_length_must_match_calls(vote) -> None:
    config = Configuration.parse({"knobs": {"k": 3}, "nodes": {"answer": [{"model": "claude-v2"}] * 2}})
    with pytest.raises(SpecError, match="makes 3 call"):
        resolve(vote, config)


def test_configuration_key_is_canonical() -> None:
    a = Configuration.parse('{"knobs": {"k": 3}, "nodes": {"b": {"model": "x"}, "a": {"model": "y"}}}')
    b = Configuration.parse('{"nodes": {"a": {"model": "y"}, "b": {"model": "x"}}, "knobs": {"k": 3}}')
    assert a.key() == b.key()
