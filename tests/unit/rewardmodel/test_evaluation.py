"""Held-out metrics on hand-made scores, and the eval path on a tiny saved model."""

from __future__ import annotations

import pytest

from optune.errors import UserError
from optune.rewardmodel.evaluation import evaluate_reward_model, format_report, pairwise_metrics


def test_pairwise_metrics_hand_worked():
    # margins: 0.1, -0.3, 0.0 (tie: wrong), 0.7, 1.5, -2.5
    chosen = [1.1, 0.0, 2.0, 0.7, 1.5, -1.0]
    rejected = [1.0, 0.3, 2.0, 0.0, 0.0, 1.5]
    m = pairwise_metrics(chosen, rejected)
    assert m["pairs"] == 6
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["mean_margin"] == pytest.approx((0.1 - 0.3 + 0.0 + 0.7 + 1.5 - 2.5) / 6)
    by = {b["bucket"]: (b["pairs"], b["accuracy"]) for b in m["by_margin"]}
    assert by["[0, 0.25)"] == (2, pytest.approx(0.5))      # 0.1 right, 0.0 tie
    assert by["[0.25, 0.5)"] == (1, 0.0)                    # -0.3 wrong
    assert by["[0.5, 1)"] == (1, 1.0)                       # 0.7 right
    assert by["[1, 2)"] == (1, 1.0)                         # 1.5 right
    assert by["[2, inf)"] == (1, 0.0)                       # -2.5 wrong
    report = format_report({**m, "normalised": True})
    assert "accuracy 0.5000" in report and "[2, inf)" in report


def test_empty_scores_are_an_error():
    with pytest.raises(UserError):
        pairwise_metrics([], [])


@pytest.mark.slow
def test_evaluate_saved_model_on_file(tiny_bert, pair_files, tmp_path):
    from optune.rewardmodel.config import RewardTrainConfig
    from optune.rewardmodel.train import train_reward_model

    train, heldout = pair_files
    out = tmp_path / "rm"
    cfg = RewardTrainConfig(backbone=str(tiny_bert), train_files=[str(train)], output_dir=str(out), max_length=32,
                       batch_size=8, lr=3e-3, warmup_ratio=0.0, epochs=3.0, stats_max_pairs=16)
    train_reward_model(cfg, log=lambda s: None)
    result = evaluate_reward_model(str(out), [str(heldout)], batch_size=4)
    assert result["pairs"] == 16 and result["normalised"] is True
    assert result["accuracy"] == 1.0 and result["mean_margin"] > 0
    assert sum(b["pairs"] for b in result["by_margin"]) == 16
    assert evaluate_reward_model(str(out), [str(heldout)], max_pairs=5)["pairs"] == 5
