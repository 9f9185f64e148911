"""Reward config: YAML, key=value overrides, and one clear error per bad value."""

from __future__ import annotations

import os

import pytest

from optune.errors import UserError
from optune.rewardmodel.config import load_reward_config

REPO = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_shipped_config_loads_and_overrides_win():
    cfg = load_reward_config(os.path.join(REPO, "configs", "reward-hh.yaml"), ["lr=2e-5", "epochs=2", "max_steps=10"])
    assert cfg.backbone == "minilm" and cfg.lr == 2e-5 and cfg.epochs == 2.0 and cfg.max_steps == 10
    assert any("helpful-base" in f for f in cfg.eval_files)


def test_list_override_and_string_promoted_to_list():
    cfg = load_reward_config(None, ["train_files=[a.jsonl, b.jsonl]", "eval_files=c.jsonl"])
    assert cfg.train_files == ["a.jsonl", "b.jsonl"] and cfg.eval_files == ["c.jsonl"]


@pytest.mark.parametrize(
    "override, message",
    [
        ("nonsense=1", "unknown config key 'nonsense'; valid keys here: backbone, "),
        ("batch_size=abc", "config key batch_size: expected int"),
        ("batch_size=0", "batch_size must be > 0; got 0"),
        ("batch_size=true", "config key batch_size: expected int"),
        ("train_files=5", "config key train_files: expected a list of str"),
        ("warmup_ratio=1.5", "warmup_ratio must be in \\[0, 1\\); got 1.5"),
        ("lr", "expected key=value"),
    ],
)
def test_bad_values_are_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        load_reward_config(None, [override])


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_reward_config(str(path))
    with pytest.raises(UserError, match="config file .*missing.yaml does not exist"):
        load_reward_config(str(tmp_path / "missing.yaml"))


def test_every_key_is_described():
    import dataclasses

    from optune.config.run import describe
    from optune.rewardmodel.config import RewardTrainConfig

    lines = describe(RewardTrainConfig)
    assert len(lines) == len(dataclasses.fields(RewardTrainConfig))
    assert all(line.split("\n    ", 1)[1].strip() for line in lines)
    assert lines[0].startswith("backbone = 'minilm'\n    Model to put")
