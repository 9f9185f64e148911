"""Reward judge: outcomes from a reward backend's scores, with a tie margin."""

import math

import pytest

from optune.errors import UserError
from optune.eval.reward_judge import RewardJudge
from optune.prompt import Prompt


class LengthReward:
    """Reward = number of words; records and responses must line up."""

    def __init__(self):
        self.calls = 0

    def score(self, records, responses):
        self.calls += 1
        assert len(records) == len(responses)
        return [float(len(r.split())) for r in responses]


RECORDS = [Prompt(str(i), "q") for i in range(3)]


def test_outcomes_and_margin():
    backend = LengthReward()
    a = ["one two three", "one", "one two"]
    b = ["one", "one two three", "one two three"]
    out = RewardJudge(backend).compare(RECORDS, a, b)
    assert [(j["first"], j["second"]) for j in out] == [("win", "win"), ("lose", "lose"), ("lose", "lose")]
    assert out[0]["reward_a"] == 3.0 and out[0]["reward_b"] == 1.0
    assert backend.calls == 2  # one batched call per system
    # with margin 1, a one-word gap is a tie, a two-word gap is not
    out = RewardJudge(LengthReward(), margin=1.0).compare(RECORDS, a, b)
    assert [j["first"] for j in out] == ["win", "lose", "tie"]


def test_bad_margin_and_bad_backend():
    with pytest.raises(UserError, match="margin"):
        RewardJudge(LengthReward(), margin=-1)

    class Short:
        def score(self, records, responses):
            return [1.0]

    with pytest.raises(UserError, match="1 scores for 3"):
        RewardJudge(Short()).compare(RECORDS, ["a"] * 3, ["b"] * 3)

    class NaN:
        def score(self, records, responses):
            return [math.nan] * len(responses)

    with pytest.raises(UserError, match="non-finite"):
        RewardJudge(NaN()).compare(RECORDS, ["a"] * 3, ["b"] * 3)
