"""optune.pairs.online: the selection is stored, so a resumed run regenerates the same prompts."""

import pytest

from optune.clock import Clock
from optune.config.run import RunConfig
from optune.generation.base import Sample
from optune.pairs import Response
from optune.pairs.online import OnlineSource
from optune.pairs.source import PromptPool
from optune.prompt import Prompt
from optune.selection import iteration_pool
from optune.store import RunStore, read_json, read_jsonl


def source_for(tmp_path, rho=0.5, strategy="optune", per_iteration=None, **kw) -> OnlineSource:
    cfg = RunConfig()
    cfg.selection.rho, cfg.selection.strategy = rho, strategy
    pool = PromptPool([Prompt(f"p{i}", "", ids=[i]) for i in range(6)], per_iteration, cfg.seed)
    return OnlineSource(RunStore(tmp_path), kw.pop("generator", None), kw.pop("reward", None), pool, cfg.selection,
                        "", generation_batch=1, reward_batch=kw.pop("reward_batch", 1), seed=cfg.seed)


def state_with(rewards):
    return {f"p{i}": [Response("", [1], True, r, 0), Response("", [2], True, r - 1, 0)]
            for i, r in enumerate(rewards)}


def test_iteration0_selects_every_prompt(tmp_path):
    assert source_for(tmp_path).select(0, {}) == list(range(6))


def test_lowest_chosen_rewards_are_selected_and_stored(tmp_path):
    source = source_for(tmp_path)
    picked = source.select(1, state_with([0.9, 0.1, 0.5, 0.3, 0.8, 0.2]))
    assert picked == [1, 3, 5]
    assert read_json(source.store.selection(1)) == {"iteration": 1, "prompt_ids": ["p1", "p3", "p5"]}


def test_resume_replays_the_stored_selection_not_a_new_one(tmp_path):
    source = source_for(tmp_path)
    first = source.select(1, state_with([0.9, 0.1, 0.5, 0.3, 0.8, 0.2]))
    # the state a resumed run rebuilds could rank differently (e.g. other rewards): the stored choice wins
    again = source.select(1, state_with([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert again == first
    random_source = source_for(tmp_path / "r", strategy="random")
    assert random_source.select(2, state_with([0.0] * 6)) == random_source.select(2, state_with([1.0] * 6))


def test_fresh_prompts_are_always_generated_and_rho_applies_to_the_rest(tmp_path):
    source = source_for(tmp_path, per_iteration=4)
    first, second = iteration_pool(6, 4, 0, 0), iteration_pool(6, 4, 1, 0)  # 2 new, then 2 wrapped round
    assert source.select(0, {}) == first
    state = {k: v for k, v in state_with([0.9, 0.1, 0.5, 0.3, 0.8, 0.2]).items() if int(k[1:]) in first}
    seen = [i for i in second if i in first]
    lowest = min(seen, key=lambda i: [0.9, 0.1, 0.5, 0.3, 0.8, 0.2][i])  # ceil(0.5 * 2) = 1 of the 2 seen
    assert source.select(1, state) == sorted([i for i in second if i not in first] + [lowest])


class TwoSamples:
    """A generator stand-in: two fixed responses per prompt."""

    def generate(self, model, prompt_ids, n, seed, path=None, greedy=False):
        return [[Sample("a b c", [1, 2], True), Sample("a", [3], False)] for _ in prompt_ids]


def scored_source(tmp_path, reward_keys: dict) -> OnlineSource:
    from optune.config.run import apply_mapping
    from optune.reward.backends import make_reward

    cfg = RunConfig()
    apply_mapping(cfg.reward, reward_keys, "reward.")
    return source_for(tmp_path, generator=TwoSamples(), reward=make_reward(cfg.reward), reward_batch=2)


def test_component_scores_are_stored_per_response(tmp_path):
    source = scored_source(tmp_path, {"backend": "mix", "components": [
        {"name": "len", "backend": "length", "target_words": 3, "length_penalty": "short"},
        {"name": "z", "backend": "length", "target_words": 3, "weight": 2.0, "standardize": True}]})
    state = source.generate_and_score(0, [0, 1, 2], None, Clock())
    first, second = state["p0"]
    assert first.parts == {"len": 0.0, "z": 0.0} and second.parts == {"len": -2 / 3, "z": -2 / 3}
    # z: 0 and -2/3 alternate over each scored batch (4 responses; 2 for p2), standardised to +1, -1; weight 2
    assert (first.reward, second.reward) == pytest.approx((2.0, -2 / 3 - 2.0))
    rows = read_jsonl(source.store.batch_path(source.store.score_dir(0), 0))
    assert rows[0]["parts"] == {"len": [0.0, -2 / 3], "z": [0.0, -2 / 3]}
    assert source.generate_and_score(0, [0, 1, 2], None, Clock()) == state  # read back from score/, as on resume


def test_a_single_reward_stores_no_parts(tmp_path):
    source = scored_source(tmp_path, {"backend": "length", "target_words": 3})
    state = source.generate_and_score(0, [0, 1], None, Clock())
    assert all(r.parts is None for rs in state.values() for r in rs)
    assert list(read_jsonl(source.store.batch_path(source.store.score_dir(0), 0))[0]) == ["prompt_id", "rewards"]
