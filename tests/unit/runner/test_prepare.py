"""optune.runner.prepare: checks that need no model (optional packages), and what decides a shared iteration 0."""

import importlib.util

import pytest

from optune.config.run import RunConfig
from optune.errors import UserError
from optune.runner.prepare import _iteration0_settings, check_packages


@pytest.mark.parametrize("key,value,package", [("generation.backend", "vllm", "vllm"), ("lora.r", 8, "peft")])
def test_a_missing_optional_package_is_one_line_before_any_work(monkeypatch, key, value, package):
    cfg = RunConfig()
    section, name = key.split(".")
    setattr(getattr(cfg, section), name, value)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == package else real(n, *a))
    with pytest.raises(UserError, match=f"needs the {package} package"):
        check_packages(cfg)
    check_packages(RunConfig())  # the default needs neither


def test_shared_iteration0_ignores_deployment_keys_and_later_sections():
    a, b = RunConfig(), RunConfig()
    b.reward.url, b.reward.timeout_s, b.selection.rho, b.eval.kl = "http://elsewhere:9/v1", 5.0, 1.0, False
    assert _iteration0_settings(a, "cpu") == _iteration0_settings(b, "cpu")
    b.train.lr = 5e-4
    mine, theirs = _iteration0_settings(a, "cpu"), _iteration0_settings(b, "cpu")
    assert [k for k in mine if mine[k] != theirs[k]] == ["train.lr"]


def test_bf16_auto_is_resolved_once_and_a_set_value_is_kept(monkeypatch):
    from optune.choices import Bf16
    from optune.config.run import load_config
    from optune.runner import prepare
    from optune.training import precision

    monkeypatch.setattr(precision, "bf16_pays", lambda device: (True, "CPU has avx512_bf16"))
    assert RunConfig().train.bf16 == Bf16.AUTO
    cfg, why = prepare.resolve_bf16(RunConfig())
    assert cfg.train.bf16 == Bf16.TRUE and cfg.train.use_bf16 and why == "train.bf16=auto -> true: CPU has avx512_bf16"
    sampler = load_config(None, ["generation.sampler_logprobs=true"])
    assert prepare.resolve_bf16(sampler)[0].train.bf16 == Bf16.FALSE  # the sampler's log-probs are float32
    monkeypatch.setattr(precision, "bf16_pays", lambda device: (False, "CPU has no amx_bf16 or avx512_bf16"))
    assert prepare.resolve_bf16(RunConfig())[0].train.use_bf16 is False
    # what config.yaml records after resolution (true/false) is kept on any machine, e.g. on resume
    for value, want in (("true", Bf16.TRUE), ("false", Bf16.FALSE)):
        cfg, why = prepare.resolve_bf16(load_config(None, [f"train.bf16={value}"]))
        assert cfg.train.bf16 == want and why == f"train.bf16={value} as set"
    with pytest.raises(ValueError, match="still auto"):
        _ = RunConfig().train.use_bf16


def test_bf16_takes_yaml_booleans_and_refuses_other_values(tmp_path):
    from optune.choices import Bf16
    from optune.config.run import load_config

    path = tmp_path / "c.yaml"
    path.write_text("train:\n  bf16: true\n")
    assert load_config(str(path)).train.bf16 == Bf16.TRUE
    assert load_config(None, ["train.bf16=auto"]).train.bf16 == Bf16.AUTO
    with pytest.raises(UserError, match="train.bf16 must be one of auto, true, false; got 'maybe'"):
        load_config(None, ["train.bf16=maybe"])
