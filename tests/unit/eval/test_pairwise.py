"""Win Score (Eq. 7), the two-order rule and the bootstrap interval, on hand-worked cases."""

import pytest

from optune.errors import UserError
from optune.eval import combine_orders, win_score
from optune.eval.pairwise import bootstrap_interval, outcome_from_scores, summarize


@pytest.mark.parametrize("first,second,expected", [
    ("win", "win", "win"), ("win", "tie", "win"), ("tie", "win", "win"),
    ("lose", "lose", "lose"), ("lose", "tie", "lose"), ("tie", "lose", "lose"),
    ("tie", "tie", "tie"), ("win", "lose", "tie"), ("lose", "win", "tie"),
])
def test_combine_orders_rule(first, second, expected):
    assert combine_orders(first, second) == expected


def test_combine_orders_rejects_unknown_outcome():
    with pytest.raises(ValueError):
        combine_orders("win", "draw")


def test_win_score_hand_worked():
    # 50 + 100 * (30 - 10) / 80 = 75
    assert win_score(30, 10, 80) == pytest.approx(75.0)
    # all losses: 50 - 100 = -50; all wins: 150; equal wins and losses: 50
    assert win_score(0, 4, 4) == pytest.approx(-50.0)
    assert win_score(4, 0, 4) == pytest.approx(150.0)
    assert win_score(7, 7, 20) == pytest.approx(50.0)
    # 50 + 100 * (2 - 5) / 12 = 25
    assert win_score(2, 5, 12) == pytest.approx(25.0)


@pytest.mark.parametrize("args", [(1, 1, 0), (3, 2, 4), (-1, 0, 3)])
def test_win_score_rejects_inconsistent_counts(args):
    with pytest.raises(ValueError):
        win_score(*args)


def test_outcome_from_scores_margin():
    assert outcome_from_scores(8, 7) == "win"
    assert outcome_from_scores(7, 8) == "lose"
    assert outcome_from_scores(7, 7) == "tie"
    assert outcome_from_scores(1.05, 1.0, margin=0.1) == "tie"
    assert outcome_from_scores(1.2, 1.0, margin=0.1) == "win"


def test_summarize_counts_and_excludes_unjudged():
    s = summarize(["win", "win", "tie", "lose", None])
    assert (s["n"], s["n_win"], s["n_tie"], s["n_lose"], s["n_unjudged"]) == (4, 2, 1, 1, 1)
    assert s["win_score"] == pytest.approx(75.0)  # 50 + 100 * (2 - 1) / 4
    low, high = s["ci95"]
    assert low <= s["win_score"] <= high


def test_summarize_all_unjudged_is_a_user_error():
    with pytest.raises(UserError, match="unparseable"):
        summarize([None, None])


def test_bootstrap_interval_degenerate_and_width():
    assert bootstrap_interval(["win"] * 10) == (150.0, 150.0)
    low, high = bootstrap_interval(["win", "lose"] * 50, seed=1)
    # mean 50, sd of one draw 100, n = 100: interval about 50 +- 19.6
    assert 25 < low < 40 and 60 < high < 75
