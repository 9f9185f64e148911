"""optune.api without a model: building configs from Python, callable rewards, resume rules, the CLI's mapping.

Runs of the API on the tiny policy are in tests/e2e/test_api.py.
"""

import dataclasses
import os
import subprocess
import sys

import pytest
import yaml

from optune.api import RunResult, build_config, resumed_config
from optune.cli.run import overrides as cli_overrides
from optune.config.run import RunConfig, load_config, to_dict
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.backends import make_reward
from optune.reward.config import RewardConfig
from optune.runner.metrics import IterationMetrics
from optune.store import RunStore
from tests.conftest import REPO

TINY = REPO / "configs" / "tiny.yaml"


def brevity(prompts, responses):
    return [-len(r) / 100 for r in responses]


def test_every_way_of_giving_an_override_is_the_same():
    expected = load_config(str(TINY), ["selection.rho=0.25", "loss.type=dpo"])
    assert build_config(str(TINY), {"selection.rho": 0.25, "loss.type": "dpo"}) == expected
    assert build_config(TINY, {"selection": {"rho": 0.25}, "loss": {"type": "dpo"}}) == expected
    from optune.api import _flat

    assert build_config(TINY, _flat({"selection__rho": 0.25, "loss__type": "dpo"})) == expected
    mapping = build_config(yaml.safe_load(TINY.read_text()), {"selection.rho": 0.25, "loss.type": "dpo"})
    # a mapping has no folder: its relative paths stay relative to the working directory, the file's are made
    # absolute against the file's folder
    assert mapping.data.train == "../tests/data/prompts8.jsonl"
    assert expected.data.train == str(REPO / "tests" / "data" / "prompts8.jsonl")
    assert dataclasses.replace(mapping, data=expected.data) == expected
    assert build_config(TINY, cli_overrides(["selection.rho=0.25", "loss.type=dpo"])) == expected


def test_a_runconfig_is_copied_not_changed():
    base = load_config(str(TINY))
    cfg = build_config(base, {"selection.rho": 1.0, "train.lr": 0.5})
    assert (cfg.selection.rho, cfg.train.lr) == (1.0, 0.5)
    assert (base.selection.rho, base.train.lr) == (0.5, 1e-3)


@pytest.mark.parametrize("overrides,message", [
    ({"selection.rho": 2}, r"selection.rho must be in \(0, 1\]"),
    ({"loss.bta": 1}, "unknown config key 'loss.bta'"),
    ({"train": {"lr": "fast"}}, "config key train.lr: expected float, got 'fast'"),
    ({"reward.function": brevity, "reward.backend": "hf", "reward.model": "x"}, "needs reward.backend callable"),
    ({"data.prompt_field": " "}, "data.prompt_field must name a field"),
])
def test_mistakes_are_one_user_error(overrides, message):
    with pytest.raises(UserError, match=message):
        build_config(TINY, overrides)
    with pytest.raises(UserError, match="config must be a YAML path"):
        build_config(42)


def test_python_function_as_reward():
    cfg = build_config(None, {"reward": {"function": brevity}})  # the default's backend is verifiable
    assert cfg.reward.backend == "callable" and cfg.reward.function is brevity
    label = "<python callable tests.unit.test_api.brevity>"
    assert to_dict(cfg)["reward"]["function"] == label
    assert yaml.safe_load(yaml.safe_dump(to_dict(cfg)))["reward"]["function"] == label  # config.yaml stays YAML
    assert make_reward(cfg.reward).score([Prompt("p", "p")] * 2, ["ab", "abcd"]) == [-0.02, -0.04]
    scorer = type("Scorer", (), {"__call__": lambda self, p, r: [1.0] * len(r)})()  # a callable object
    assert build_config(None, {"reward.function": scorer}).reward.backend == "callable"


def test_a_recorded_function_label_cannot_be_called():
    with pytest.raises(UserError, match=r"the Python function tests.unit.test_api.brevity, which config.yaml cannot "
                                        r"hold; resume it from Python and pass the function again"):
        make_reward(RewardConfig(backend="callable", function="<python callable tests.unit.test_api.brevity>"))


def _store(tmp_path, cfg: RunConfig) -> RunStore:
    store = RunStore.create(tmp_path / "run", yaml.safe_dump(to_dict(cfg), sort_keys=False), {})
    store.close()  # made as a run leaves it; its lock released
    return store


def test_resume_takes_the_function_again_and_nothing_else(tmp_path, capsys):
    store = _store(tmp_path, build_config(TINY, {"reward.function": brevity}))
    cfg = resumed_config(store, {"reward": {"function": brevity}})
    assert cfg.reward.function is brevity and cfg.selection.rho == 0.5
    with pytest.raises(UserError, match="resume takes the run's own config"):
        resumed_config(store, {"selection.rho": 1.0})
    with pytest.raises(UserError, match="resume takes the run's own config"):
        resumed_config(store, {"reward.function": "optune.tasks.toy:letter_fraction"})
    resumed_config(store, {"reward.function": len})
    assert "resuming with builtins.len; the run started with tests.unit.test_api.brevity" in capsys.readouterr().err
    plain = _store(tmp_path / "b", load_config(str(TINY)))
    with pytest.raises(UserError, match="reward.function is 'optune.tasks.toy:letter_fraction'.*not a Python function"):
        resumed_config(plain, {"reward.function": brevity})


def test_result_curve_and_checkpoint(tmp_path):
    logged = [{"iteration": 0, "eval/heldout_reward_start": 0.1, "eval/heldout_reward": 0.2},
              {"iteration": 1, "eval/heldout_reward": 0.3}]
    result = RunResult(run_dir=tmp_path, config=RunConfig(), metrics=[IterationMetrics.from_log(m) for m in logged])
    assert result.heldout_rewards == [0.1, 0.2, 0.3] and result.best_iteration == 1
    assert result.checkpoint == tmp_path / "iter_001" / "checkpoint"
    bare = RunResult(run_dir=tmp_path, config=RunConfig(), metrics=[IterationMetrics.from_log({"iteration": 0})])
    assert bare.heldout_rewards == [] and bare.best_iteration is None


def test_import_optune_stays_light():
    code = ("import sys, optune; assert 'torch' not in sys.modules and 'optune.api' not in sys.modules; "
            "optune.run; optune.dpo; optune.export; assert 'torch' not in sys.modules; "
            "print(optune.RunResult.__name__)")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "RunResult"


def test_cli_resume_of_a_python_reward_run_says_how(tmp_path, capsys, monkeypatch):
    """An unfinished run whose reward was a Python function: one line telling how to resume, before any model."""
    import optune.runner.prepare
    from optune.cli import main

    monkeypatch.setattr(optune.runner.prepare, "resolve_policy", lambda *a: pytest.fail("a model was resolved"))
    prompts = str(REPO / "tests" / "data" / "prompts8.jsonl")
    cfg = build_config(TINY, {"reward.function": brevity, "data.train": prompts, "data.heldout": prompts,
                              "output_dir": str(tmp_path / "run")})
    store = _store(tmp_path, cfg)
    assert main(["run", "--resume", str(store.root)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optune run: error: reward.function: this run's reward was the Python function "
                          "tests.unit.test_api.brevity, which config.yaml cannot hold; resume it from Python")
    assert len(err.splitlines()) == 1
    with pytest.raises(UserError, match="resume it from Python and pass the function again"):
        import optune

        optune.run(resume=store.root)


def test_resuming_a_run_recorded_before_a_default_changed_keeps_the_old_value(tmp_path):
    recorded = to_dict(load_config(str(TINY)))
    del recorded["generation"]["impl"], recorded["train"]["packing"]  # a config.yaml from before they existed
    store = RunStore.create(tmp_path / "old", yaml.safe_dump(recorded, sort_keys=False), {})
    store.close()
    cfg = resumed_config(store, {})
    assert (cfg.generation.impl, cfg.train.packing) == ("generate", False)
    assert (RunConfig().generation.impl, RunConfig().train.packing) == ("auto", True)
    today = _store(tmp_path / "new", load_config(str(TINY), ["generation.impl=decode"]))
    assert (resumed_config(today, {}).generation.impl, resumed_config(today, {}).train.packing) == ("decode", True)


def test_dpo_trains_every_pair_unless_max_prompts_is_set(tmp_path):
    """optune dpo's default is every pair read (the online default of 96 prompts silently capped pair sets)."""
    assert build_config(None, {}).data.max_prompts == 96
    assert build_config(None, {}, "dpo").data.max_prompts is None
    assert build_config({"seed": 1}, {}, "dpo").data.max_prompts is None
    assert build_config(None, {"data.max_prompts": 5}, "dpo").data.max_prompts == 5
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  max_prompts: 7\n")
    assert build_config(str(config), {}, "dpo").data.max_prompts == 7
