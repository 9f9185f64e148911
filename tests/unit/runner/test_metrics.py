"""optune.runner.metrics: the typed record and the metrics.json it writes are one thing in two forms."""

import json

import pytest

from optune.runner.metrics import Heldout, IterationMetrics, heldout_curve, start_reward

# a metrics.json as the loop wrote it before the record existed (iteration 0 of the tiny config, constraint kinds
# of the built-in task added): the record must read it and write it back key for key, in the same order
LOGGED = {
    "iteration": 0, "loss": 0.4985, "rewards/chosen": 0.0, "rewards/rejected": 0.0, "rewards/accuracies": 0.0,
    "weights/mean": 0.7192, "logps/chosen": -88.24, "logps/rejected": -83.01, "grad_norm": 0.9065,
    "rewards/margins": 0.0, "lr": 0.0005, "train/steps": 2, "logps/chosen_before": -88.23,
    "logps/rejected_before": -82.23, "logps/chosen_after": -85.97, "logps/rejected_after": -83.70,
    "rewards/margins_after": 0.3737, "objective/scores": 0.1447, "objective/scores_margin": 0.0875,
    "objective/scores_all": 0.1010, "val/contain_eos_token": 0.0625, "pairs/trained": 7, "pairs/dropped_ties": 1,
    "pairs/ties": 1, "selection/n_regenerated": 8, "selection/frac_regenerated": 1.0, "eval/heldout_reward": 0.25,
    "eval/length_words": 3.0, "eval/length_tokens": 16.0, "eval/eos_rate": 0.0, "eval/repetition_rate": 0.0,
    "eval/constraint_pass/title": 0.5, "eval/constraint_pass/start_with": 0.25, "eval/kl_reference": -0.5,
    "eval/kl_initial": -0.5, "eval/heldout_reward_start": 0.125, "eval/length_words_start": 2.0,
    "eval/length_tokens_start": 16.0, "eval/eos_rate_start": 0.0, "eval/repetition_rate_start": 0.0,
    "eval/constraint_pass/title_start": 0.0, "eval/constraint_pass/start_with_start": 0.5,
    "time/generation_s": 0.6, "time/generation_frac": 0.6 / 1.25, "time/rewarding_s": 0.05,
    "time/rewarding_frac": 0.05 / 1.25, "time/training_s": 0.5, "time/training_frac": 0.5 / 1.25,
    "time/bookkeeping_s": 0.1, "time/bookkeeping_frac": 0.1 / 1.25, "time/eval_s": 0.5, "time/iteration_s": 1.25,
    "time/elapsed_s": 1.25}


def test_a_logged_iteration_reads_back_and_writes_the_same_keys_in_the_same_order():
    m = IterationMetrics.from_log(LOGGED)
    assert list(m.to_log()) == list(LOGGED)
    assert json.dumps(m.to_log()) == json.dumps(LOGGED)


def test_attributes_say_what_the_keys_said():
    m = IterationMetrics.from_log(LOGGED)
    assert (m.pairs_trained, m.ties, m.dropped_ties, m.n_regenerated) == (7, 1, 1, 8)
    assert m.heldout == Heldout(0.25, {"length_words": 3.0, "length_tokens": 16.0, "eos_rate": 0.0,
                                       "repetition_rate": 0.0}, {"title": 0.5, "start_with": 0.25},
                                {"kl_reference": -0.5, "kl_initial": -0.5})
    assert m.start.constraint_pass == {"title": 0.0, "start_with": 0.5} and m.start.kl == {}
    assert m.train["rewards/margins_after"] == 0.3737 and "eval/heldout_reward" not in m.train
    assert m.work_s == pytest.approx(1.25) and m.seconds["eval"] == 0.5
    assert m["eval/heldout_reward"] == 0.25  # user code written against the dicts
    assert heldout_curve([m]) == [(0, 0.25)] and start_reward([m]) == 0.125


def test_all_tied_means_nothing_trained_because_every_pair_tied():
    m = IterationMetrics.from_log(LOGGED)
    assert not m.all_tied
    tied = IterationMetrics.from_log({**LOGGED, "pairs/trained": 0, "pairs/ties": 8})
    assert tied.all_tied
    assert not IterationMetrics.from_log({**LOGGED, "pairs/trained": 0, "pairs/ties": 0}).all_tied


def test_an_older_log_without_held_out_or_times_reads():
    old = {"iteration": 2, "loss": 0.69, "pairs/trained": 3, "pairs/ties": 0, "objective/scores": 0.5}
    m = IterationMetrics.from_log(old)
    assert m.heldout is None and m.start is None and m.seconds == {} and m.train == {"loss": 0.69}
    assert heldout_curve([m]) == [] and start_reward([m]) is None
    assert {k: v for k, v in m.to_log().items() if k in old} == old
