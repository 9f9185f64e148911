import pytest

from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.backends import checked_score, load_function, make_reward
from optune.reward.config import RewardConfig


class Fixed:
    def __init__(self, out):
        self.out = out

    def score(self, records, responses):
        return self.out


def test_checked_score_rejects_wrong_count_and_non_finite():
    recs = [Prompt("a", "p")] * 2
    assert checked_score(Fixed([1, 0.5]), recs, ["x", "y"]) == [1.0, 0.5]
    with pytest.raises(UserError, match="returned 1 scores for 2 responses"):
        checked_score(Fixed([1.0]), recs, ["x", "y"])
    with pytest.raises(UserError, match="non-finite"):
        checked_score(Fixed([1.0, float("nan")]), recs, ["x", "y"])
    with pytest.raises(UserError, match="not a list of numbers"):
        checked_score(Fixed(["a", "b"]), recs, ["x", "y"])


def test_callable_from_module_and_file(tmp_path):
    backend = make_reward(RewardConfig(backend="callable", function="optune.tasks.toy:letter_fraction"))
    hi, lo = backend.score([Prompt("a", "p")] * 2, ["abc def", "ABC!!!"])
    assert hi > lo
    f = tmp_path / "r.py"
    f.write_text("def length(prompts, responses):\n    return [len(r) for r in responses]\n")
    assert load_function(f"{f}:length")(["p"], ["abcd"]) == [4]


@pytest.mark.parametrize("spec,match", [("nocolon", "module:function"), ("no_such_mod:f", "cannot import"),
                                        ("optune.tasks.toy:missing", "no function"), ("/x/y.py:f", "does not exist")])
def test_bad_function_specs(spec, match):
    with pytest.raises(UserError, match=match):
        load_function(spec)


def test_unknown_backend():
    with pytest.raises(ValueError, match="RewardBackendName"):  # configs are checked as they load
        make_reward(RewardConfig(backend="gpt"))
