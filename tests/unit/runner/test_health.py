"""optune.runner.health: held-out statistics, the log-ratio, the warnings, the best iteration and early stopping."""

import pytest

from optune.runner import health


def test_words_and_repetition():
    assert health.words("Don't stop - well-known GPS, 3 times.") == 6  # don't, stop, well-known, GPS, 3, times
    assert not health.is_repetitive("The tides rise twice a day. The moon pulls the sea.")
    assert health.is_repetitive("Hello there.\nSomething else.\nhello there.")  # a line twice (case-folded)
    loop = "remember the storm that shaped the ocean " * 3
    assert health.is_repetitive(loop)  # "remember the storm that" three times
    assert not health.is_repetitive("remember the storm that shaped the ocean " * 2)  # twice is not a loop


def test_response_stats_hand_worked():
    stats = health.response_stats(["one two three", "a b a b a b a b a b", ""], [4, 11, 1], [True, False, True])
    assert stats == pytest.approx({"length_words": 13 / 3, "length_tokens": 16 / 3, "eos_rate": 2 / 3,
                                   "repetition_rate": 1 / 3})
    assert health.response_stats([], [], []) == {}


def test_log_ratio_is_the_mean_difference():
    assert health.log_ratio([-10.0, -4.0], [-12.0, -3.0]) == pytest.approx(0.5)  # (2 + -1) / 2
    assert health.log_ratio([-5.0], [-5.0]) == 0.0
    with pytest.raises(ValueError):
        health.log_ratio([-1.0], [])


def test_warnings_name_a_shrinking_answer_only_while_the_reward_rises():
    before = {"reward": 0.50, "length_words": 40.0, "eos_rate": 0.9, "repetition_rate": 0.05}
    shorter = {"reward": 0.58, "length_words": 18.0, "eos_rate": 0.9, "repetition_rate": 0.05}
    (line,) = health.warnings(before, shorter)
    assert "55% shorter (40.0 -> 18.0 words)" in line and "0.5000 -> 0.5800" in line
    assert health.warnings(before, {**shorter, "reward": 0.45}) == []  # reward fell too: no contradiction to flag
    assert health.warnings(before, {**shorter, "length_words": 31.0}) == []  # within 25%
    worse = {"reward": 0.4, "length_words": 40.0, "eos_rate": 0.5, "repetition_rate": 0.3}
    assert [w.split(" (")[0] for w in health.warnings(before, worse)] == [
        "fewer held-out responses end with EOS", "more held-out responses repeat themselves"]
    assert health.warnings({}, shorter) == []


def test_best_iteration_and_early_stop():
    curve = [(0, 0.6), (1, 0.7), (2, 0.65), (3, 0.7)]
    assert health.best_iteration(curve) == 1  # the earliest of the two 0.7s
    assert health.best_iteration([]) is None
    with_start = [0.5, 0.6, 0.7, 0.65]  # pi_0, then after iterations 0-2
    assert not health.stop_early(with_start, 0)  # off
    assert health.stop_early(with_start, 1) and not health.stop_early(with_start, 2)
    assert health.stop_early([0.5, 0.4, 0.3], 2)  # start 0.5 -> 0.4 -> 0.3
    assert not health.stop_early([0.5, 0.4], 2)
