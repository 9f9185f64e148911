"""optune.pairs.online: the selection is stored, so a resumed run regenerates the same prompts."""

from types import SimpleNamespace

import pytest

from optune.clock import Clock, progress
from optune.config.run import RunConfig
from optune.generation.base import Sample
from optune.pairs import Response
from optune.pairs.online import generate_and_score, select
from optune.prompt import Prompt
from optune.selection import iteration_pool
from optune.store import RunStore, read_json, read_jsonl


def ctx_for(tmp_path, rho=0.5, strategy="optune", per_iteration=None):
    cfg = RunConfig()
    cfg.selection.rho, cfg.selection.strategy = rho, strategy
    cfg.data.prompts_per_iteration = per_iteration
    prompts = [Prompt(f"p{i}", "") for i in range(6)]
    pool = lambda t: [prompts[i] for i in iteration_pool(6, per_iteration, t, cfg.seed)]  # noqa: E731
    return SimpleNamespace(cfg=cfg, store=RunStore(tmp_path), prompts=prompts, iteration_prompts=pool)


def state_with(rewards):
    return {f"p{i}": [Response("", [1], True, r, 0), Response("", [2], True, r - 1, 0)]
            for i, r in enumerate(rewards)}


def test_iteration0_selects_every_prompt(tmp_path):
    assert select(ctx_for(tmp_path), 0, {}) == list(range(6))


def test_lowest_chosen_rewards_are_selected_and_stored(tmp_path):
    ctx = ctx_for(tmp_path)
    picked = select(ctx, 1, state_with([0.9, 0.1, 0.5, 0.3, 0.8, 0.2]))
    assert picked == [1, 3, 5]
    assert read_json(ctx.store.selection(1)) == {"iteration": 1, "prompt_ids": ["p1", "p3", "p5"]}


def test_resume_replays_the_stored_selection_not_a_new_one(tmp_path):
    ctx = ctx_for(tmp_path)
    first = select(ctx, 1, state_with([0.9, 0.1, 0.5, 0.3, 0.8, 0.2]))
    # the state a resumed run rebuilds could rank differently (e.g. other rewards): the stored choice wins
    again = select(ctx, 1, state_with([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert again == first
    random_ctx = ctx_for(tmp_path / "r", strategy="random")
    assert select(random_ctx, 2, state_with([0.0] * 6)) == select(random_ctx, 2, state_with([1.0] * 6))


def test_fresh_prompts_are_always_generated_and_rho_applies_to_the_rest(tmp_path):
    ctx = ctx_for(tmp_path, per_iteration=4)
    first, second = iteration_pool(6, 4, 0, 0), iteration_pool(6, 4, 1, 0)  # 2 new, then 2 wrapped round
    assert select(ctx, 0, {}) == first
    state = {k: v for k, v in state_with([0.9, 0.1, 0.5, 0.3, 0.8, 0.2]).items() if int(k[1:]) in first}
    seen = [i for i in second if i in first]
    lowest = min(seen, key=lambda i: [0.9, 0.1, 0.5, 0.3, 0.8, 0.2][i])  # ceil(0.5 * 2) = 1 of the 2 seen
    assert select(ctx, 1, state) == sorted([i for i in second if i not in first] + [lowest])


class TwoSamples:
    """A generator stand-in: two fixed responses per prompt."""

    def generate(self, model, prompt_ids, n, seed, path=None, greedy=False):
        return [[Sample("a b c", [1, 2], True), Sample("a", [3], False)] for _ in prompt_ids]


def scored_ctx(tmp_path, reward_keys: dict):
    from optune.config.run import apply_mapping
    from optune.distributed import Dist
    from optune.reward.backends import make_reward

    ctx = ctx_for(tmp_path)
    apply_mapping(ctx.cfg.reward, reward_keys, "reward.")
    ctx.cfg.reward.batch_size = 4
    return SimpleNamespace(**vars(ctx), dist=Dist(), generator=TwoSamples(), reward=make_reward(ctx.cfg.reward),
                           progress=lambda desc, total: progress(desc, total, False), policy_path=lambda t: "")


def test_component_scores_are_stored_per_response(tmp_path):
    ctx = scored_ctx(tmp_path, {"backend": "mix", "components": [
        {"name": "len", "backend": "length", "target_words": 3, "length_penalty": "short"},
        {"name": "z", "backend": "length", "target_words": 3, "weight": 2.0, "standardize": True}]})
    state = generate_and_score(ctx, 0, [0, 1, 2], None, Clock())
    first, second = state["p0"]
    assert first.parts == {"len": 0.0, "z": 0.0} and second.parts == {"len": -2 / 3, "z": -2 / 3}
    # z: 0 and -2/3 alternate over each scored batch (4 responses; 2 for p2), standardised to +1, -1; weight 2
    assert (first.reward, second.reward) == pytest.approx((2.0, -2 / 3 - 2.0))
    rows = read_jsonl(ctx.store.batch_path(ctx.store.score_dir(0), 0))
    assert rows[0]["parts"] == {"len": [0.0, -2 / 3], "z": [0.0, -2 / 3]}
    assert generate_and_score(ctx, 0, [0, 1, 2], None, Clock()) == state  # read back from score/, as on resume


def test_a_single_reward_stores_no_parts(tmp_path):
    ctx = scored_ctx(tmp_path, {"backend": "length", "target_words": 3})
    state = generate_and_score(ctx, 0, [0, 1], None, Clock())
    assert all(r.parts is None for rs in state.values() for r in rs)
    assert list(read_jsonl(ctx.store.batch_path(ctx.store.score_dir(0), 0))[0]) == ["prompt_id", "rewards"]
