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
