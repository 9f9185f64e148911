"""Log-line wording: plurals, numbers, progress bars."""

from optune.clock import progress
from optune.formatting import num, plural


def test_plural():
    assert plural(1, "iteration") == "1 iteration" and plural(2, "iteration") == "2 iterations"
    assert plural(0, "repeat") == "0 repeats" and plural(3, "was", "were") == "3 were"


def test_num_has_no_negative_zero():
    assert num(-1e-6) == "0.0000" and num(-0.00004) == "0.0000" and num(-0.00005001) == "-0.0001"
    assert num(0.12345) == "0.1235" and num(-0.004, 2) == "0.00" and num(-1.5, 2) == "-1.50"


def test_no_progress_bar_for_nothing(capsys):
    with progress("iter 0 reference", 0) as bar:
        assert bar.disable
    with progress("iter 0 train", 3) as bar:
        assert not bar.disable
    assert "0it" not in capsys.readouterr().err


def test_iteration_line_prints_no_negative_zero():
    from optune.runner.loop import summary_line
    from optune.runner.metrics import IterationMetrics

    m = {"iteration": 0, "selection/n_regenerated": 8, "selection/frac_regenerated": 1.0, "objective/scores": -2e-6,
         "pairs/trained": 7, "pairs/dropped_ties": 1, "loss": 0.5, "rewards/accuracies": 0.5,
         "eval/heldout_reward": -1e-7, "eval/length_words": 3.0, "eval/kl_reference": -0.001,
         "time/generation_s": 1.0, "time/rewarding_s": 0.1, "time/training_s": 1.0, "time/iteration_s": 2.1}
    line = summary_line(IterationMetrics.from_log(m))
    assert "reward chosen 0.0000" in line and "heldout 0.0000 (3 words, kl 0.00)" in line and "-0.0" not in line
