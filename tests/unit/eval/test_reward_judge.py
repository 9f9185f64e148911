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


def test_a_mapping_or_bools_are_not_scores():
    class Keys:  # iterating a dict gives its keys: never scores
        def score(self, records, responses):
            return {r: 1.0 for r in responses}

    class Labels:
        def score(self, records, responses):
            return [True] * len(responses)

    with pytest.raises(UserError, match=r"the judge's reward backend returned a dict \(a mapping\)"):
        RewardJudge(Keys()).compare(RECORDS, ["a", "b", "c"], ["d", "e", "f"])
    with pytest.raises(UserError, match=r"score 0 is True \(bool\)"):
        RewardJudge(Labels()).compare(RECORDS, ["a"] * 3, ["b"] * 3)


def test_llm_judge_ratings_are_finite_where_they_are_parsed():
    from optune.eval.rating import parse_scores
    from optune.reward.llm import parse_rating

    huge = "9" * 400  # float() of it is inf: the [0, 10] range refuses it, as it refuses NaN's spellings
    assert parse_scores(f"{huge} 5") is None and parse_scores("nan inf") is None
    assert parse_rating(huge) is None and parse_rating("nan") is None and parse_rating("inf") is None
