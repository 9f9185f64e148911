"""What a reward may return: one finite real number per response, anything else one line naming who."""

import numpy as np
import pytest
import torch

from optune.errors import UserError
from optune.reward.scores import check_scores


@pytest.mark.parametrize("value", [[1, 0.5], (1, 0.5), np.array([1.0, 0.5]), np.array([1, 0.5], dtype=np.float32),
                                   torch.tensor([1.0, 0.5]), [np.float64(1.0), np.float32(0.5)],
                                   [torch.tensor(1.0), np.array(0.5)], (x for x in [1, 0.5])])
def test_numbers_in_any_container_are_floats(value):
    scores = check_scores(value, 2)
    assert scores == [1.0, 0.5] and all(type(s) is float for s in scores)


@pytest.mark.parametrize("value,match", [
    ({"a": 1.0, "b": 2.0}, r"returned a dict \(a mapping\), not a list of numbers"),  # never its keys
    ("ab", "returned a string"),
    (b"ab", "returned a string"),
    (3.0, "returned float, not a list of numbers"),
    (None, "returned NoneType"),
    ((x for x in [1.0, 2.0, 3.0]), "returned 3 scores for 2 responses"),
    ([True, False], r"score 0 is True \(bool\)"),
    (np.array([True, False]), r"score 0 is True \(bool\)"),
    ([np.True_, 1.0], r"score 0 is (np\.)?True_? \(bool_?\)"),  # numpy 1 and 2 repr it differently
    (["1", "2"], r"not a list of numbers: score 0 is '1' \(str\)"),
    ([1.0, None], r"score 1 is None"),
    (np.zeros((2, 1)), r"array of shape \(2, 1\); expected shape \(2,\)"),
    (np.zeros(3), r"array of shape \(3,\)"),
    (torch.zeros(1, 2), r"array of shape \(1, 2\)"),
    ([1.0, float("nan")], r"non-finite score \(nan\) for response 1"),
    (np.array([np.inf, 1.0]), r"non-finite score \(inf\) for response 0"),
])
def test_anything_else_is_one_line_naming_who(value, match):
    with pytest.raises(UserError, match=match) as err:
        check_scores(value, 2, who="reward function m.f")
    assert str(err.value).startswith("reward function m.f returned") and "\n" not in str(err.value)


def test_missing_eos_penalty_hits_only_unfinished_responses():
    from optune.reward.scores import eos_penalized

    assert eos_penalized([0.5, 0.5, -1.0], [True, False, False], 0.25) == [0.5, 0.25, -1.25]
    scores = [0.1, 0.2]
    assert eos_penalized(scores, [False, False], 0.0) is scores  # off: untouched
    with pytest.raises(ValueError):
        eos_penalized([0.1], [True, False], 0.25)
