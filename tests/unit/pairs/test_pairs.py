"""optune.pairs: typed responses, merging, pair building (ties, labels, weights)."""

import pytest
import torch

from optune.losses import make_loss
from optune.pairs import Pair, Response, build_pairs, merge, parts_at, parts_field, state_from_rows, state_rows
from optune.prompt import Prompt

PROMPTS = [Prompt("a", "", ids=[1]), Prompt("b", "", ids=[2, 2]), Prompt("c", "", ids=[3])]


def resp(reward, t=0, ids=(7,), logp=None):
    return Response(text=f"r{reward}", ids=list(ids), eos=True, reward=reward, generated_at=t, logp=logp)


def state():
    return {"a": [resp(0.2), resp(0.9)], "b": [resp(0.5, ids=(5,)), resp(0.5, ids=(6,))], "c": [resp(1.0), resp(-1.0)]}


def unit_weights(c, r):
    return torch.ones_like(c)


def test_chosen_is_the_higher_reward_and_ties_are_dropped_and_counted():
    pairs, rows, ties = build_pairs(PROMPTS, state(), unit_weights)
    assert ties == 1
    assert [p.prompt_id for p in pairs] == ["a", "c"]
    assert [(p.chosen.reward, p.rejected.reward) for p in pairs] == [(0.9, 0.2), (1.0, -1.0)]
    assert pairs[0].prompt_ids == [1]
    assert [r["tie"] for r in rows] == [False, True, False]
    assert [r["trained"] for r in rows] == [True, False, True]
    assert [r["prompt_id"] for r in rows] == ["a", "b", "c"]  # one row per prompt, ties included


def test_ties_kept_when_drop_ties_is_off():
    pairs, rows, ties = build_pairs(PROMPTS, state(), unit_weights, drop_ties=False)
    assert ties == 1 and [p.prompt_id for p in pairs] == ["a", "b", "c"]
    assert rows[1]["tie"] and rows[1]["trained"]
    assert pairs[1].chosen.ids == [5]  # on equal rewards the first response is chosen


def test_labelled_pairs_keep_the_label_whatever_the_rewards():
    pairs, rows, ties = build_pairs(PROMPTS, state(), unit_weights, labelled=True)
    assert ties == 0 and len(pairs) == 3
    assert [(p.chosen.reward, p.rejected.reward) for p in pairs] == [(0.2, 0.9), (0.5, 0.5), (1.0, -1.0)]
    assert not any(r["tie"] for r in rows)


def test_rows_carry_the_losses_weights():
    loss = make_loss("wdpo", beta1=0.1, beta2=2.0)
    _, rows, _ = build_pairs(PROMPTS, state(), loss.weights)
    expected = torch.sigmoid(torch.tensor([2 * 0.7, 0.0, 2 * 2.0])).tolist()
    assert [r["weight"] for r in rows] == pytest.approx(expected, abs=1e-6)
    _, rows, _ = build_pairs(PROMPTS, state(), make_loss("dpo", beta1=0.1).weights)
    assert [r["weight"] for r in rows] == [1.0, 1.0, 1.0]


def test_merge_replaces_only_the_regenerated_prompts():
    old = state()
    fresh = {"b": [resp(0.1, t=1), resp(0.3, t=1)]}
    new = merge(old, fresh)
    assert new["b"] == fresh["b"] and new["a"] is old["a"] and new["c"] is old["c"]
    assert old["b"][0].reward == 0.5  # the old state is not modified


def test_state_rows_round_trip_in_prompt_order():
    s = state()
    s["a"][0].logp = -3.5
    rows = state_rows(PROMPTS, s)
    assert [r["prompt_id"] for r in rows] == ["a", "b", "c"]
    assert "logp" in rows[0]["responses"][0] and "logp" not in rows[0]["responses"][1]
    assert state_from_rows(rows) == s


def test_fresh_means_both_sampled_at_this_iteration():
    assert Pair("x", [1], resp(1.0, t=2), resp(0.0, t=2)).fresh(2)
    assert not Pair("x", [1], resp(1.0, t=1), resp(0.0, t=2)).fresh(2)


def test_component_scores_round_trip_and_are_stored_only_when_present():
    with_parts = Response("t", [1], True, 0.5, 1, parts={"task": 0.75, "length": -0.5})
    row = with_parts.to_row()
    assert row["parts"] == {"task": 0.75, "length": -0.5} and Response.from_row(row) == with_parts
    plain = resp(0.5)
    assert list(plain.to_row()) == ["text", "ids", "eos", "reward", "generated_at"]  # as before composite rewards
    assert Response.from_row(plain.to_row()).parts is None
    assert parts_at({"a": [1.0, 2.0], "b": [3.0, 4.0]}, 1) == {"a": 2.0, "b": 4.0} and parts_at(None, 0) is None
    assert parts_field({"a": [1.0, 2.0, 3.0]}, 1, 3) == {"parts": {"a": [2.0, 3.0]}} and parts_field(None, 0, 2) == {}


def test_prompt_pool_is_every_prompt_or_the_seeded_draw():
    from optune.pairs.source import PromptPool
    from optune.selection import iteration_pool

    prompts = [Prompt(f"p{i}", "") for i in range(6)]
    assert PromptPool(prompts).at(3) == prompts
    assert [p.id for p in PromptPool(prompts, 4, seed=1).at(2)] == [f"p{i}" for i in iteration_pool(6, 4, 2, 1)]


def test_score_pairs_is_one_row_per_prompt_with_its_two_rewards():
    from optune.pairs.source import score_pairs

    class Words:
        def score(self, prompts, responses):
            return [float(len(r.split())) for r in responses]

    prompts = [Prompt("a", ""), Prompt("b", "")]
    rows = score_pairs(Words(), prompts, [("one two", "one"), ("x", "x y z")], [(True, False), (True, True)], 0.5)
    assert rows == [{"prompt_id": "a", "rewards": [2.0, 0.5]}, {"prompt_id": "b", "rewards": [1.0, 3.0]}]
    assert score_pairs(Words(), prompts[:1], [("one", "")])[0]["rewards"] == [1.0, 0.0]
