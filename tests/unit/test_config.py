import dataclasses

import pytest

from optune.config import RunConfig, describe, field_docs, load_config, parse_override
from optune.errors import UserError


def test_every_field_has_a_docstring():
    def walk(cls):
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
                walk(f.default_factory)

    walk(RunConfig)
    assert len(describe(RunConfig)) >= 35


def test_overrides_are_typed():
    cfg = load_config(None, ["selection.rho=1", "loss.type=dpo", "data.max_prompts=null", "report_to=[tensorboard]"])
    assert cfg.selection.rho == 1.0 and isinstance(cfg.selection.rho, float)
    assert load_config(None, ["train.lr=1e-5"]).train.lr == 1e-5
    assert cfg.loss.type == "dpo" and cfg.data.max_prompts is None and cfg.report_to == ["tensorboard"]


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  beta1: 0.2\nselection:\n  rho: 0.3\n")
    cfg = load_config(str(path), ["selection.rho=0.7"])
    assert cfg.loss.beta1 == 0.2 and cfg.selection.rho == 0.7


def test_unknown_key_lists_valid_ones():
    with pytest.raises(UserError, match=r"unknown config key 'loss.bta'.*loss.beta1"):
        load_config(None, ["loss.bta=1"])
    with pytest.raises(UserError, match="unknown config key 'nope'"):
        load_config(None, ["nope=1"])


@pytest.mark.parametrize("override,match", [
    ("selection.rho=0", "rho"), ("selection.rho=1.5", "rho"), ("selection.strategy=best", "strategy"),
    ("loss.type=ipo", "loss.type"), ("train.batch_size=abc", "expected int"), ("iterations=0", "iterations"),
    ("train.lr=-1", "lr"), ("train.lr=nan", "finite"), ("loss.beta2=.inf", "finite"), ("loss", "key.sub=value"),
])
def test_bad_values(override, match):
    with pytest.raises(UserError, match=match):
        load_config(None, [override])


def test_missing_config_file():
    with pytest.raises(UserError, match="does not exist"):
        load_config("/nonexistent.yaml")


def test_parse_override_nesting():
    assert parse_override("a.b.c=3") == {"a": {"b": {"c": 3}}}


def test_shipped_yaml_files_load():
    from pathlib import Path

    for path in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")):
        if path.name.startswith("reward"):
            continue
        load_config(str(path))


def test_sampler_logprobs_needs_a_backend_that_returns_them():
    import pytest

    from optune.config import load_config
    from optune.errors import UserError

    with pytest.raises(UserError, match="sampler_logprobs needs generation.backend vllm, or transformers with"):
        load_config(None, ["generation.sampler_logprobs=true", "generation.impl=generate"])
    assert load_config(None, ["generation.sampler_logprobs=true",
                              "generation.backend=vllm"]).generation.sampler_logprobs
    assert load_config(None, ["generation.sampler_logprobs=true", "generation.impl=decode"]).generation.sampler_logprobs
    with pytest.raises(UserError, match="generation.impl must be one of decode, generate"):
        load_config(None, ["generation.impl=fast"])


def test_default_yaml_mirrors_the_dataclasses():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    assert load_config(str(path)) == RunConfig()
