"""optune.report.components: the reward components' means over an iteration's chosen responses."""

import pytest

from optune.pairs import Response, state_rows
from optune.prompt import Prompt
from optune.report.components import component_means


def response(reward, parts=None):
    return Response(text="", ids=[1], eos=True, reward=reward, generated_at=0, parts=parts)


def test_means_over_the_chosen_responses():
    state = {"a": [response(0.2, {"task": 0.0, "length": -1.0}), response(0.9, {"task": 1.0, "length": -0.5})],
             "b": [response(0.5, {"task": 0.5, "length": 0.0}), response(0.5, {"task": 0.9, "length": -0.1})],
             "c": [response(0.7, {"task": 0.25}), response(0.1, {"task": 0.0, "length": -1.0})]}
    rows = state_rows([Prompt("a", ""), Prompt("b", ""), Prompt("c", "")], state)
    # chosen: a's second (higher reward), b's first (the first of a tie), c's first (it has no length score)
    assert component_means(rows) == pytest.approx({"task": (1.0 + 0.5 + 0.25) / 3, "length": (-0.5 + 0.0) / 2})
    # labelled (offline) pairs: the first response is the chosen one
    assert component_means(rows, labelled=True) == pytest.approx({"task": 0.75 / 3, "length": -0.5})


def test_no_components_no_means():
    rows = state_rows([Prompt("a", "")], {"a": [response(0.2), response(0.9)]})
    assert component_means(rows) == {} and component_means([]) == {}


def test_the_report_shows_each_components_means_per_iteration(tmp_path):
    from optune.report.runs import Run
    from optune.report.summary import markdown

    state = {"a": [response(0.2, {"task": 0.0, "length": -1.0}), response(0.9, {"task": 1.0, "length": -0.5})]}
    rows = state_rows([Prompt("a", "")], state)
    mixed = Run("mix", tmp_path, [{"iteration": 0}, {"iteration": 1}], responses={0: rows, 1: rows})
    plain = Run("plain", tmp_path, [{"iteration": 0}],
                responses={0: state_rows([Prompt("a", "")], {"a": [response(0.2), response(0.9)]})})
    text = markdown([mixed, plain], {}, tmp_path)
    assert "## Reward components" in text
    assert "| run | iteration | length | task |" in text
    assert "| mix | 0 | -0.500 | 1.000 |" in text and "| mix | 1 | -0.500 | 1.000 |" in text
    assert "| plain |" not in text.split("## Reward components")[1].split("##")[0]
    assert "## Reward components" not in markdown([plain], {}, tmp_path)
