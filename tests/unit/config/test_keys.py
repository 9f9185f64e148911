"""Config keys beyond the dataclasses: paths in a config file relative to its folder, TRL's names as aliases,
and "did you mean X?" for an unknown key."""

from __future__ import annotations

import os

import pytest

from optune.api import build_config
from optune.config.run import PATH_KEYS, TRL_ALIASES, RunConfig, load_config
from optune.config.schema import leaf_keys
from optune.errors import UserError
from tests.conftest import REPO

TINY = REPO / "configs" / "tiny.yaml"
PROMPTS = str(REPO / "tests" / "data" / "prompts8.jsonl")


def test_a_config_file_finds_its_data_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cfg in (load_config(str(TINY)), build_config(str(TINY))):
        assert cfg.data.train == PROMPTS and cfg.data.heldout == PROMPTS
        assert os.path.isfile(cfg.data.train)
        assert cfg.policy.model == "tiny:llama" and cfg.reward.function == "optune.tasks.toy:letter_fraction"
    # an override is relative to the working directory, as typed
    assert load_config(str(TINY), ["data.train=mine.jsonl"]).data.train == "mine.jsonl"


def test_which_values_are_paths(tmp_path, monkeypatch):
    folder = tmp_path / "conf"
    (folder / "models" / "policy").mkdir(parents=True)
    (folder / "rw.py").write_text("def f(p, r):\n    return [0.0] * len(r)\n")
    (folder / "c.yaml").write_text(
        "output_dir: runs/a\ninit_from: runs/base\npolicy:\n  model: models/policy\n"
        "data:\n  train: a.jsonl, sub/b.jsonl\n  heldout: verifiable:heldout\n"
        "reward:\n  backend: mix\n  components:\n"
        "    - {name: f, backend: callable, function: rw.py:f}\n"
        "    - {name: j, backend: llm, url: 'http://127.0.0.1:9/v1', model: judge-7b, cache: cache/j.jsonl}\n")
    monkeypatch.chdir(tmp_path)
    data = build_config(str(folder / "c.yaml"))
    assert data.output_dir == str(folder / "runs" / "a") and data.init_from == str(folder / "runs" / "base")
    assert data.policy.model == str(folder / "models" / "policy")
    assert data.data.train == f"{folder / 'a.jsonl'},{folder / 'sub' / 'b.jsonl'}"
    assert data.data.heldout == "verifiable:heldout"
    f, j = data.reward.components
    assert f.function == f"{folder / 'rw.py'}:f"
    assert (j.model, j.cache, j.url) == ("judge-7b", str(folder / "cache" / "j.jsonl"), "http://127.0.0.1:9/v1")
    (folder / "d.yaml").write_text("policy:\n  model: HuggingFaceTB/SmolLM2-135M-Instruct\n"
                                   "reward:\n  backend: callable\n  function: my_module:score\n"
                                   "data:\n  train: hf:trl-lib/ultrafeedback-prompt\n  heldout: ~/p.jsonl\n")
    hub = load_config(str(folder / "d.yaml"))
    assert hub.policy.model == "HuggingFaceTB/SmolLM2-135M-Instruct"  # no such folder: a hub id
    assert (hub.reward.function, hub.data.train, hub.data.heldout) == (
        "my_module:score", "hf:trl-lib/ultrafeedback-prompt", "~/p.jsonl")
    assert set(PATH_KEYS) <= set(leaf_keys(RunConfig()))


def test_trl_names_are_aliases(tmp_path):
    cfg = load_config(None, ["beta=0.3", "learning_rate=1e-4", "per_device_train_batch_size=4",
                             "gradient_accumulation_steps=8", "num_train_epochs=3", "lr_scheduler_type=cosine",
                             "max_prompt_length=128", "max_completion_length=32", "optim=adamw_torch",
                             "warmup_ratio=0.05", "max_grad_norm=1.0", "seed=7"])
    assert (cfg.loss.beta1, cfg.train.lr, cfg.train.batch_size, cfg.train.grad_accum, cfg.train.epochs) == \
        (0.3, 1e-4, 4, 8, 3)
    assert (cfg.train.lr_schedule, cfg.policy.max_prompt_tokens, cfg.generation.max_new_tokens) == ("cosine", 128, 32)
    assert (cfg.train.optimizer, cfg.train.warmup_ratio, cfg.train.max_grad_norm, cfg.seed) == ("adamw", 0.05, 1.0, 7)
    assert load_config(None, ["max_new_tokens=20"]).generation.max_new_tokens == 20
    assert load_config(None, ["lr_scheduler_type=constant_with_warmup"]).train.lr_schedule == "constant"
    path = tmp_path / "trl.yaml"
    path.write_text("beta: 0.2\nlearning_rate: 5.0e-7\nloss:\n  type: dpo\n")
    cfg = load_config(str(path))
    assert (cfg.loss.beta1, cfg.train.lr, cfg.loss.type) == (0.2, 5e-7, "dpo")
    assert build_config(None, {"beta": 0.4, "optim": "sgd"}).loss.beta1 == 0.4
    assert {a.key for a in TRL_ALIASES.values()} <= set(leaf_keys(RunConfig()))


@pytest.mark.parametrize("overrides,message", [
    (["optim=adafactor"], "optim='adafactor' has no optune equivalent; train.optimizer is one of rmsprop, adamw, sgd"),
    (["lr_scheduler_type=polynomial"], "lr_scheduler_type='polynomial' has no optune equivalent"),
    (["lr_scheduler_type=constant"], "for TRL's constant set warmup_ratio=0"),
])
def test_trl_values_without_an_equivalent_are_refused_with_a_hint(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


def test_an_alias_and_its_key_both_set_is_an_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("beta: 0.2\nloss:\n  beta1: 0.3\n")
    with pytest.raises(UserError, match="beta is another name for loss.beta1, which is set too"):
        load_config(str(path))


@pytest.mark.parametrize("key,close", [("loss.bta", "loss.beta"), ("rho", "selection.rho"), ("lr", "train.lr"),
                                       ("train.beta1", "loss.beta1"), ("generation.max_new_token",
                                                                       "generation.max_new_tokens")])
def test_unknown_keys_get_did_you_mean(key, close):
    with pytest.raises(UserError, match=rf"unknown config key '{key}' \(did you mean {close}"):
        load_config(None, [f"{key}=1"])
    with pytest.raises(UserError, match=r"unknown config key 'zzz'; valid keys here"):
        load_config(None, ["zzz=1"])
