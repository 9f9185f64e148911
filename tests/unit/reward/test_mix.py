"""reward.backend=mix and length: hand-worked totals, standardisation, parts, and the checks on components."""

import math
from pathlib import Path

import pytest

from optune.config.run import apply_mapping, load_config
from optune.data.prompts import load_prompts
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.backends import checked_score, make_reward, scored_parts
from optune.reward.config import RewardConfig, validate_reward
from optune.reward.mix import standardized


def words(prompts, responses):
    return [len(r.split()) for r in responses]


def not_finite(prompts, responses):
    return [float("nan")] * len(responses)


RESPONSES = ["a b", "a b c d", "a"]
PROMPTS = [Prompt(f"p{i}", "q") for i in range(3)]


def mix(*components) -> RewardConfig:
    """A validated mix reward config from component mappings (functions given as Python callables)."""
    cfg = RewardConfig()
    apply_mapping(cfg, {"backend": "mix", "components": list(components)}, "reward.")
    validate_reward(cfg)
    return cfg


def two_components(standardize: bool) -> RewardConfig:
    return mix({"name": "words", "backend": "callable", "function": words, "standardize": standardize},
               {"name": "floor", "backend": "length", "target_words": 2, "length_penalty": "short", "weight": 2.0})


@pytest.mark.parametrize("penalty,expected", [("short", [-0.5, 0.0, 0.0]), ("long", [0.0, 0.0, -0.5]),
                                              ("both", [-0.5, 0.0, -0.5])])
def test_length_penalty_by_word_count(penalty, expected):
    backend = make_reward(RewardConfig(backend="length", target_words=4, length_penalty=penalty))
    assert backend.score(PROMPTS, ["a b", "a b c d", "a  b\nc d e f"]) == expected


def test_mix_total_is_the_weighted_sum_and_parts_are_raw():
    backend = make_reward(two_components(standardize=False))
    totals, parts = scored_parts(backend, PROMPTS, RESPONSES)
    # words: 2, 4, 1; floor (target 2, short): 0, 0, -0.5, weight 2
    assert totals == [2.0, 4.0, 0.0]
    assert parts == {"words": [2.0, 4.0, 1.0], "floor": [0.0, 0.0, -0.5]}
    assert checked_score(backend, PROMPTS, RESPONSES) == totals == backend.score(PROMPTS, RESPONSES)


def test_standardised_component_uses_its_batch_z_score():
    totals, parts = scored_parts(make_reward(two_components(standardize=True)), PROMPTS, RESPONSES)
    # words 2, 4, 1: mean 7/3, deviations -1/3, 5/3, -4/3, population std sqrt(14)/3
    root = math.sqrt(14)
    assert totals == pytest.approx([-1 / root, 5 / root, -4 / root - 1.0])
    assert parts["words"] == [2.0, 4.0, 1.0]  # stored raw, not standardised


def test_standardized_constant_batch_is_zeros():
    assert standardized([0.1, 0.1, 0.1]) == [0.0, 0.0, 0.0]
    assert standardized([5.0]) == [0.0] and standardized([]) == []
    assert standardized([1.0, 3.0]) == [-1.0, 1.0]


def test_non_finite_component_is_one_error_naming_it():
    backend = make_reward(mix({"name": "ok", "backend": "length", "target_words": 1},
                              {"name": "broken", "backend": "callable", "function": not_finite}))
    with pytest.raises(UserError, match=r"reward component 'broken' \(callable\) returned a non-finite score"):
        scored_parts(backend, PROMPTS, RESPONSES)


def test_single_backend_has_no_parts():
    scores, parts = scored_parts(make_reward(RewardConfig(backend="length", target_words=2)), PROMPTS, RESPONSES)
    assert parts is None and scores == [0.0, -1.0, -0.5]


def test_built_in_task_plus_length_floor_from_yaml(tmp_path):
    path = tmp_path / "mix.yaml"
    path.write_text("reward:\n  backend: mix\n  components:\n    - {name: task, backend: verifiable}\n"
                    "    - name: length\n      backend: length\n      target_words: 3\n      length_penalty: short\n"
                    "      weight: 0.5\n")
    cfg = load_config(str(path))
    prompts = load_prompts("verifiable:train", 2)
    texts = ["Simply put: draw shapes daily", "no"]
    totals, parts = scored_parts(make_reward(cfg.reward), prompts, texts)
    task = make_reward(RewardConfig()).score(prompts, texts)
    assert parts == {"task": task, "length": [0.0, -2 / 3]}
    assert totals == pytest.approx([task[0], task[1] - 1 / 3])


def test_mix_example_config_loads():
    cfg = load_config(str(Path(__file__).resolve().parents[3] / "configs" / "mix.yaml"))
    assert cfg.reward.backend == "mix" and [c.name for c in cfg.reward.components] == ["task", "length"]


def test_python_function_component_recorded_by_label_cannot_resume():
    cfg = RewardConfig()
    apply_mapping(cfg, {"backend": "mix", "components": [
        {"name": "f", "backend": "callable", "function": "<python callable tests.f>"}]})
    with pytest.raises(UserError, match=r"components\[0\] \(f\).*tests.f.*module:function"):
        make_reward(cfg)
