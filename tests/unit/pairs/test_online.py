"""optune.pairs.online: the selection is stored, so a resumed run regenerates the same prompts."""

from types import SimpleNamespace

from optune.config import RunConfig
from optune.pairs import Response
from optune.pairs.online import select
from optune.prompt import Prompt
from optune.store import RunStore, read_json


def ctx_for(tmp_path, rho=0.5, strategy="optune"):
    cfg = RunConfig()
    cfg.selection.rho, cfg.selection.strategy = rho, strategy
    prompts = [Prompt(f"p{i}", "") for i in range(6)]
    return SimpleNamespace(cfg=cfg, store=RunStore(tmp_path), prompts=prompts)


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
