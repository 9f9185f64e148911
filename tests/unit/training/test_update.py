import copy
import math

import pytest
import torch

from optune.config.run import TrainConfig
from optune.losses import make_loss, sequence_logps
from optune.models.policy import load_model
from optune.pairs import Pair
from optune.training import collate, reference_logps, response_logps, step_plan, train_iteration
from optune.training.reference import References, has_dropout, reference_from_training
from optune.training.update import TrainHooks, TrainInputs


def make_pairs(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(n):
        prompt = torch.randint(3, 200, (3 + i % 4,), generator=g).tolist()
        pairs.append(Pair.of(prompt, torch.randint(3, 200, (2 + i % 5,), generator=g).tolist(),
                             torch.randint(3, 200, (4 + i % 3,), generator=g).tolist(),
                             chosen_reward=0.5 + 0.05 * i, rejected_reward=0.1 * (i % 3)))
    return pairs


def test_collate_masks_prompt_and_padding():
    pairs = [Pair.of([5, 6], [7], [8, 9, 2])]
    b = collate(pairs, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 0, 0], [5, 6, 8, 9, 2]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert b["loss_mask"].tolist() == [[0, 0, 1, 0, 0], [0, 0, 1, 1, 1]]


def test_step_plan_covers_every_pair_each_epoch():
    plan = step_plan(10, TrainConfig(batch_size=3, grad_accum=2, epochs=2), seed=1)
    assert len(plan) == 4  # ceil(10 / 6) steps per epoch
    first_epoch = [i for step in plan[:2] for mb in step for i in mb]
    assert sorted(first_epoch) == list(range(10))
    assert plan == step_plan(10, TrainConfig(batch_size=3, grad_accum=2, epochs=2), seed=1)


@pytest.mark.slow
def test_batch8_equals_batch1_times_accum8(tiny_policy):
    pairs = make_pairs(8)
    base = load_model(tiny_policy)
    ref = reference_logps(base, pairs, pad_id=0, batch_size=4, bf16=False)
    results = []
    for batch, accum in ((8, 1), (1, 8)):
        model = copy.deepcopy(base)
        # SGD: the update is linear in the gradient, so float noise is not amplified (RMSprop's first step is
        # close to lr * sign(g) and flips on gradients that are zero up to rounding).
        cfg = TrainConfig(optimizer="sgd", lr=1.0, warmup_ratio=0.0, lr_schedule="constant", batch_size=batch,
                          grad_accum=accum, epochs=1, max_grad_norm=None, bf16=False)
        train_iteration(model, TrainInputs(pairs, References.of(*ref), 0, seed=3), cfg, make_loss("wdpo", 0.5, 2.0))
        results.append(model)
    changed = False
    for (name, a), b in zip(results[0].named_parameters(), results[1].parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=1e-4), name
        changed |= not torch.allclose(a, dict(base.named_parameters())[name])
    assert changed, "one update must move the parameters"


def test_training_lowers_the_loss(tiny_policy):
    pairs = make_pairs(8, seed=1)
    model = load_model(tiny_policy)
    ref = reference_logps(model, pairs, 0, 8, False)
    cfg = TrainConfig(optimizer="adamw", lr=1e-2, warmup_ratio=0.0, lr_schedule="constant", batch_size=4,
                      grad_accum=1, epochs=8, bf16=False)
    log = []
    metrics = train_iteration(model, TrainInputs(pairs, References.of(*ref), 0, seed=0), cfg, make_loss("dpo", 0.5),
                              TrainHooks(log=log.append))
    assert log[0]["loss"] > log[-1]["loss"]
    assert log[-1]["rewards/accuracies"] == 1.0
    assert metrics["train/steps"] == 16
    assert abs(log[0]["rewards/margins"]) < 1e-5  # policy == reference at the first step


def test_rank_share_splits_a_step_and_pads_to_equal_micro_batch_counts():
    from optune.training import rank_share

    step = [[0, 1], [2, 3], [4]]  # 5 pairs, micro-batch 2
    assert rank_share(step, 2, 1, 0) == ([[0, 1], [2, 3], [4]], 3)
    assert rank_share(step, 2, 2, 0) == ([[0, 1], [2]], 2)
    assert rank_share(step, 2, 2, 1) == ([[3, 4]], 2)  # runs one empty (zero-weighted) micro-batch
    shares = [rank_share(step, 2, 3, r)[0] for r in range(3)]
    assert sorted(i for s in shares for mb in s for i in mb) == [0, 1, 2, 3, 4]


def test_response_only_logits_match_full_logits(tiny_policy):
    model = load_model(tiny_policy)
    batch = collate(make_pairs(4), pad_id=0)
    with torch.no_grad():
        full = sequence_logps(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                              batch["input_ids"], batch["loss_mask"])
        fast = response_logps(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
    assert torch.allclose(full, fast, atol=1e-5)


def test_reference_from_the_first_forward_equals_the_reference_pass(tiny_policy):
    """Pairs met on the starting weights take their reference from training's forward: same references,
    same training, and every one stored before the weights move."""
    pairs = make_pairs(8, seed=2)
    base = load_model(tiny_policy)
    cfg = TrainConfig(optimizer="sgd", lr=0.5, warmup_ratio=0.1, lr_schedule="linear", batch_size=2, grad_accum=1,
                      epochs=2, max_grad_norm=None, bf16=False)  # 8 steps; steps 0 and 1 on the starting weights
    later = reference_from_training(len(pairs), cfg, seed=5)
    assert later == {i for step in step_plan(8, cfg, seed=5)[:2] for mb in step for i in mb} and len(later) == 4
    full = reference_logps(base, pairs, 0, 4, False)
    partial = tuple([math.nan if i in later else x for i, x in enumerate(side)] for side in full)
    runs, stored = [], []

    def on_ref(ref):
        stored.append((ref.chosen.tolist(), ref.rejected.tolist()))

    for ref, hook in ((full, None), (partial, on_ref)):
        model, log = copy.deepcopy(base), []
        train_iteration(model, TrainInputs(pairs, References.of(*ref, record=hook), 0, seed=5), cfg,
                        make_loss("wdpo", 0.5, 2.0), TrainHooks(log=log.append))
        runs.append((model, log))
    assert len(stored) == 2  # after each of the two steps that filled some
    assert sum(map(math.isnan, stored[0][0])) == 2 and not any(map(math.isnan, stored[1][0] + stored[1][1]))
    for got, want in zip(stored[1], full):
        assert got == pytest.approx(want, abs=1e-4)
    assert [row["rewards/margins"] for row in runs[1][1][:2]] == [0.0, 0.0]
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(next(base.parameters()), next(runs[1][0].parameters()))


def test_a_missing_reference_after_the_first_update_is_refused(tiny_policy):
    pairs = make_pairs(4)
    cfg = TrainConfig(batch_size=2, grad_accum=1, epochs=1, warmup_ratio=0.0)  # step 0 only
    later = reference_from_training(4, cfg, seed=0)
    ref = References.of([math.nan if i not in later else -1.0 for i in range(4)], [-1.0] * 4)
    with pytest.raises(ValueError, match="after the first update"):
        train_iteration(load_model(tiny_policy), TrainInputs(pairs, ref, 0, seed=0), cfg, make_loss("dpo", 0.5))


def test_has_dropout(tiny_policy):
    model = load_model(tiny_policy)
    assert not has_dropout(model)
    model.config.attention_dropout = 0.1
    assert has_dropout(model)
    assert has_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1)))
    assert not has_dropout(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.0)))
