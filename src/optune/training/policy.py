"""DPO/wDPO updates of the policy on one iteration's pairs (pi_t -> pi_{t+1}).

The loss of each optimizer step is the sum of per-pair losses divided by the number of pairs in that step,
so batch_size x grad_accum splits the same step in any way with the same gradient.

While the weights are still the starting ones (`schedule.steps_on_start_weights`: the first step, and the
warmup's lr-0 step after it) the policy *is* pi_t, so where pi_t is the reference a pair trained then needs
no reference pass: its reference log-probs are this forward's, detached (`reference_from_training`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from optune.config import TrainConfig
from optune.losses import PreferenceLoss
from optune.pairs import Pair
from optune.training.logps import pair_logps
from optune.training.schedule import make_optimizer, rank_share, step_plan, steps_on_start_weights
from optune.training.state import resume, save_train_state


STAT_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "weights/mean", "logps/chosen",
             "logps/rejected")


def micro_batch(model, pairs: list[Pair], mb: list[int], tensors: tuple, scale: float, pad_id: int,
                cfg: TrainConfig, loss: PreferenceLoss, dist) -> list[float]:
    """Forward/backward of one micro-batch with loss = scale x sum of per-pair losses; summed stats x scale."""
    ref_c_all, ref_r_all, rew_c_all, rew_r_all = tensors
    idx = torch.tensor(mb, device=ref_c_all.device)
    pol_c, pol_r = pair_logps(model, [pairs[i] for i in mb], pad_id, cfg.bf16, cfg.packing)
    ref_c, ref_r = ref_c_all[idx], ref_r_all[idx]
    missing = ref_c.isnan() | ref_r.isnan()
    if missing.any():  # train_iteration allows it only on the starting weights, where pi_t's forward is this one
        ref_c, ref_r = torch.where(missing, pol_c.detach(), ref_c), torch.where(missing, pol_r.detach(), ref_r)
        ref_c_all[idx], ref_r_all[idx] = ref_c, ref_r
    out = loss(pol_c, pol_r, ref_c, ref_r, rew_c_all[idx], rew_r_all[idx])
    dist.backward(out.losses.sum() * scale)
    values = (out.losses.detach(), out.chosen_rewards, out.rejected_rewards,
              (out.chosen_rewards > out.rejected_rewards).float(), out.weights, pol_c.detach(), pol_r.detach())
    return [float(v.sum()) * scale for v in values]


def reference_from_training(n_pairs: int, cfg: TrainConfig, seed: int) -> set[int]:
    """Indices of the pairs that single-process training meets while its weights are still the starting ones.

    Where the starting policy is the reference, those pairs need no reference pass: train_iteration takes
    their reference log-probs from its own forward (None in its `ref`).
    """
    plan = step_plan(n_pairs, cfg, seed)
    return {i for step in plan[:steps_on_start_weights(cfg, len(plan))] for mb in step for i in mb}


def has_dropout(model) -> bool:
    """Whether a training-mode forward can differ from an evaluation one: a dropout layer or setting above 0."""
    if any("Dropout" in type(m).__name__ and getattr(m, "p", 0) > 0 for m in model.modules()):
        return True
    config = getattr(model, "config", None)
    settings = config.to_dict() if hasattr(config, "to_dict") else {}
    return any(("dropout" in k or "pdrop" in k) and isinstance(v, (int, float)) and v > 0 for k, v in settings.items())


def as_floats(values: torch.Tensor) -> list[float | None]:
    """A reference tensor as stored: NaN (not yet computed) as None."""
    return [None if math.isnan(x) else x for x in values.tolist()]


def pair_tensors(pairs: list[Pair], ref: tuple[list, list], device) -> tuple[torch.Tensor, ...]:
    """[N] float32 reference log-probs (chosen, rejected; NaN where None) and rewards (chosen, rejected)."""
    refs = tuple([math.nan if x is None else x for x in r] for r in ref)
    scores = ([p.chosen.reward for p in pairs], [p.rejected.reward for p in pairs])
    return tuple(torch.tensor(x, dtype=torch.float32, device=device) for x in (*refs, *scores))


def train_iteration(model, pairs: list[Pair], ref: tuple[list, list], pad_id: int, cfg: TrainConfig,
                    loss: PreferenceLoss, seed: int, progress=None, log=None, dist=None,
                    state_path: Path | None = None, on_reference=None) -> dict:
    """Train in place on `pairs`; returns the iteration's mean metrics (TRL names).

    `ref` holds each pair's reference log-probs (chosen, rejected), or None for a pair in
    `reference_from_training`: the caller guarantees that the starting weights are the reference (no dropout
    either), and `on_reference(chosen, rejected)` receives all of them, None where still to come, after each
    step that filled some (before any training state is saved).
    With an active `dist` (optune.distributed) each step's pairs are split over processes; the loss is
    multiplied by the world size because DDP/FSDP average the processes' gradients.
    With `state_path` (single process), the training state is saved there every `cfg.save_steps` steps
    and, if present, training continues from it: the step plan is a function of the seed, so skipping
    the finished steps reproduces the uninterrupted run.
    """
    from optune.distributed import Dist

    dist = dist or Dist()
    plan = step_plan(len(pairs), cfg, seed, dist.world)
    pending = {i for i, (c, r) in enumerate(zip(*ref)) if c is None or r is None}
    if pending and (dist.active or pending - reference_from_training(len(pairs), cfg, seed)):
        raise ValueError("reference log-probs missing for pairs trained after the first update")
    tensors = pair_tensors(pairs, ref, next(model.parameters()).device)
    optimizer, scheduler = make_optimizer(model, cfg, len(plan))
    if cfg.gradient_checkpointing:
        dist.unwrap(model).gradient_checkpointing_enable()
    model, optimizer = dist.prepare(model, optimizer)
    model.train()
    state_path = None if dist.active or not cfg.save_steps else state_path
    start, totals, rows = resume(state_path, model, optimizer, scheduler, plan, progress, log)
    for step, micro_batches in enumerate(plan):
        if step < start:
            continue
        n_step = sum(len(mb) for mb in micro_batches)
        mine, n_micro = rank_share(micro_batches, cfg.batch_size, dist.world, dist.rank)
        sums = [0.0] * len(STAT_KEYS)
        for j in range(n_micro):
            mb, scale = (mine[j], dist.world / n_step) if j < len(mine) else (micro_batches[0][:1], 0.0)
            with dist.no_sync(model, sync=j == n_micro - 1):
                part = micro_batch(model, pairs, mb, tensors, scale, pad_id, cfg, loss, dist)
            sums = [a + b / dist.world for a, b in zip(sums, part)]
        stats = dict(zip(STAT_KEYS, dist.sum(sums)))
        if cfg.max_grad_norm is not None:
            clip = dist.accelerator.clip_grad_norm_ if dist.active else torch.nn.utils.clip_grad_norm_
            norm = clip(model.parameters(), cfg.max_grad_norm)  # None under DeepSpeed (its config clips)
            if norm is not None:
                stats["grad_norm"] = float(norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        filled = pending.intersection(i for mb in micro_batches for i in mb)
        if filled:
            pending -= filled
            if on_reference is not None:
                on_reference(as_floats(tensors[0]), as_floats(tensors[1]))
        stats["rewards/margins"] = stats["rewards/chosen"] - stats["rewards/rejected"]
        stats["lr"] = scheduler.get_last_lr()[0]
        rows.append({"step": step, **stats})
        if log is not None:
            log(rows[-1])
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + value / len(plan)
        if state_path is not None and (step + 1) % cfg.save_steps == 0 and step + 1 < len(plan):
            save_train_state(state_path, model, optimizer, scheduler, step + 1, totals, rows)
        if progress is not None:
            progress.update(n_step)
            progress.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['rewards/accuracies']:.2f}")
    if cfg.gradient_checkpointing:
        dist.unwrap(model).gradient_checkpointing_disable()
    totals["train/steps"] = len(plan)
    return totals
