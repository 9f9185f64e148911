import dataclasses
from pathlib import Path

import pytest

from optune.config.run import RunConfig, describe, field_docs, load_config, parse_override, validate
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

    for path in sorted((Path(__file__).resolve().parents[3] / "configs").glob("*.yaml")):
        if path.name.startswith("reward"):
            continue
        load_config(str(path))


def test_sampler_logprobs_needs_a_backend_that_returns_them():
    import pytest

    from optune.config.run import load_config
    from optune.errors import UserError

    with pytest.raises(UserError, match="sampler_logprobs needs generation.backend vllm, or transformers with"):
        load_config(None, ["generation.sampler_logprobs=true", "generation.impl=generate"])
    assert load_config(None, ["generation.sampler_logprobs=true",
                              "generation.backend=vllm"]).generation.sampler_logprobs
    assert load_config(None, ["generation.sampler_logprobs=true", "generation.impl=decode"]).generation.sampler_logprobs
    assert load_config(None, ["generation.sampler_logprobs=true"]).generation.sampler_logprobs  # auto: decode
    with pytest.raises(UserError, match="generation.impl must be one of auto, decode, generate"):
        load_config(None, ["generation.impl=fast"])


def test_generation_impl_auto_is_decode_on_a_cpu_and_generate_on_cuda():
    from optune.config.run import GenerationConfig

    auto = GenerationConfig()
    assert auto.impl == "auto"
    assert auto.resolved_impl("cpu") == "decode" and auto.resolved_impl("cuda") == "generate"
    # the decode loop's log-probs are what sampler_logprobs uses, on any device
    assert GenerationConfig(sampler_logprobs=True).resolved_impl("cuda") == "decode"
    for impl in ("decode", "generate"):
        assert GenerationConfig(impl=impl).resolved_impl("cpu") == impl == GenerationConfig(impl=impl).resolved_impl(
            "cuda")


def test_init_from_a_decode_run_is_shared_by_an_auto_run_on_a_cpu():
    """A run made when "decode" was the default computed what "auto" computes on a CPU: init_from may share it."""
    from optune.config.run import RunConfig
    from optune.runner.prepare import _iteration0_settings

    old, new = RunConfig(), RunConfig()
    old.generation.impl = "decode"
    assert _iteration0_settings(old, "cpu") == _iteration0_settings(new, "cpu")
    assert _iteration0_settings(old, "cuda") != _iteration0_settings(new, "cuda")


def test_default_yaml_mirrors_the_dataclasses():
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "configs" / "default.yaml"
    assert load_config(str(path)) == RunConfig()


MIX = "reward.backend=mix"


def components(*items: str) -> str:
    """A reward.components override from YAML flow mappings."""
    return f"reward.components=[{', '.join(items)}]"


def test_mix_components_load_as_typed_sections():
    cfg = load_config(None, [MIX, components("{name: task, backend: verifiable}",
                                            "{name: floor, backend: length, target_words: 8, weight: 1, "
                                            "length_penalty: short, standardize: true}")])
    task, floor = cfg.reward.components
    assert (task.name, task.backend, task.weight, task.standardize) == ("task", "verifiable", 1.0, False)
    assert (floor.target_words, floor.length_penalty, floor.standardize) == (8, "short", True)
    assert isinstance(floor.weight, float)
    assert RunConfig().reward.components == [] and RunConfig().reward.backend == "verifiable"


def test_unknown_component_key_names_its_path_and_the_valid_keys():
    with pytest.raises(UserError, match=r"unknown config key 'reward.components\[1\].wieght' \(did you mean "
                                        r"reward.components\[1\].weight\?\); valid keys here: "
                                        r"reward.components\[1\].backend.*reward.components\[1\].weight"):
        load_config(None, [MIX, components("{name: a, backend: verifiable}", "{name: b, wieght: 2}")])
    with pytest.raises(UserError, match=r"reward.components\[0\]: expected a mapping of RewardComponent keys"):
        load_config(None, [MIX, "reward.components=[task]"])
    with pytest.raises(UserError, match=r"reward.components\[0\].weight: expected float"):
        load_config(None, [MIX, components("{name: a, weight: heavy}")])
    with pytest.raises(UserError, match=r"reward.components\[0\].backend must be one of .*mix"):
        load_config(None, [MIX, components("{name: a, backend: gpt}")])


@pytest.mark.parametrize("overrides,match", [
    ([MIX], r"reward.backend mix needs reward.components"),
    ([components("{name: a}")], r"reward.components is set but reward.backend is verifiable"),
    ([MIX, components("{name: a}", "{name: a, backend: length}")], r"the name 'a' is used twice"),
    ([MIX, components("{backend: length}")], r"reward.components\[0\].name must be a non-empty name"),
    ([MIX, components("{name: 'has space'}")], r"reward.components\[0\].name must be"),
    ([MIX, components("{name: inner, backend: mix}")], r"reward.components\[0\].backend cannot be mix"),
    ([MIX, components("{name: a, weight: .nan}")], r"reward.components\[0\].weight must be a finite number"),
    ([MIX, components("{name: a, weight: .inf}")], r"reward.components\[0\].weight must be a finite number"),
    ([MIX, components("{name: a}", "{name: b, backend: callable}")],
     r"reward.components\[1\].backend callable needs reward.components\[1\].function"),
    ([MIX, components("{name: rm, backend: hf}")],
     r"reward.components\[0\].backend hf needs reward.components\[0\].model"),
    ([MIX, components("{name: a, backend: length, target_words: 0}")],
     r"reward.components\[0\].target_words must be >= 1"),
    ([MIX, components("{name: j, backend: llm, url: 'http://127.0.0.1:1/v1'}")],
     r"reward.components\[0\].backend llm needs reward.components\[0\].model"),
    (["reward.target_words=0"], r"reward.target_words must be >= 1; got 0"),
    (["reward.batch_size=0"], r"reward.batch_size must be >= 1; got 0"),
])
def test_mix_checks(overrides, match):
    with pytest.raises(UserError, match=match):
        load_config(None, overrides)


def test_help_config_lists_the_mix_keys():
    text = "\n".join(describe(RunConfig))
    assert "reward.components = []" in text and "reward.target_words = 50" in text
    assert "one of: short, long, both" in text and "one of: verifiable, callable, hf, remote, llm, length, mix" in text


def test_one_component_key_is_overridden_by_its_index():
    path = Path(__file__).resolve().parents[3] / "configs" / "mix.yaml"
    cfg = load_config(str(path), ["reward.components[1].weight=2", "reward.components[0].standardize=true"])
    assert cfg.reward.components[1].weight == 2.0 and cfg.reward.components[0].standardize
    with pytest.raises(UserError, match=r"reward.components\[2\]: reward.components has 2 items"):
        load_config(str(path), ["reward.components[2].weight=2"])
    with pytest.raises(UserError, match=r"unknown config key 'report_to\[0\]'"):
        load_config(None, ["report_to[0]=x"])


def test_index_override_leaves_a_copied_configs_original_alone():
    from optune.api import build_config

    original = build_config(str(Path(__file__).resolve().parents[3] / "configs" / "mix.yaml"))
    changed = build_config(original, {"reward.components[1].weight": 3})
    assert (changed.reward.components[1].weight, original.reward.components[1].weight) == (3.0, 0.5)


def test_a_python_function_with_another_reward_backend_is_refused_by_name():
    cfg = RunConfig()
    cfg.reward.function = lambda prompts, responses: [0.0] * len(responses)
    with pytest.raises(UserError, match=r"^reward.function is a Python function; it needs reward.backend callable, "
                                        r"not 'verifiable'$"):
        validate(cfg)


def test_fsdp_with_lora_is_refused_in_one_line():
    with pytest.raises(UserError, match="train.fsdp does not shard LoRA runs") as err:
        load_config(None, ["train.fsdp=true", "lora.r=4"])
    assert "\n" not in str(err.value)
    assert load_config(None, ["train.fsdp=true"]).train.fsdp
