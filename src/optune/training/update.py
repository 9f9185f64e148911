"""DPO/wDPO updates of the policy on one iteration's pairs (pi_t -> pi_{t+1}).

The loss of each optimizer step is the sum of per-pair losses divided by the number of pairs in that step,
so batch_size x grad_accum splits the same step in any way with the same gradient.

While the weights are still the starting ones (`schedule.steps_on_start_weights`: the first step, and the
warmup's lr-0 step after it) the policy *is* pi_t, so where pi_t is the reference a pair trained then needs
no reference pass: its reference log-probs are this forward's, detached (`reference_from_training`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from optune.clock import Progress
from optune.config.run import TrainConfig
from optune.distributed import Dist
from optune.losses import PreferenceLoss
from optune.pairs import Pair
from optune.training.logps import pair_logps
from optune.training.reference import References, reference_from_training
from optune.training.schedule import make_optimizer, rank_share, step_plan
from optune.training.state import resume, save_train_state


@dataclass
class TrainInputs:
    """What one iteration's training works on: the pairs, their references, the padding id and the seed of the
    step plan (so a resumed run replays the same steps)."""

    pairs: list[Pair]
    reference: References
    pad_id: int
    seed: int


@dataclass
class TrainHooks:
    """What training reports to, all optional: a progress bar, each step's metrics row, and the file of the
    mid-iteration training state (single process)."""

    progress: Progress | None = None
    log: Callable[[dict], None] | None = None
    state_path: Path | None = None
    state_then: str = "training this iteration from its start"
    """What the line about a damaged training state says happens instead."""


def micro_batch(model, inputs: TrainInputs, mb: list[int], scale: float, cfg: TrainConfig, loss: PreferenceLoss,
                dist) -> dict[str, float]:
    """Forward/backward of one micro-batch with loss = scale x sum of per-pair losses; summed stats x scale.

    A reference still missing is filled from this forward (`References.take`; train_iteration allows it only on
    the starting weights, where pi_t's forward is this one).
    """
    idx = torch.tensor(mb, device=inputs.reference.chosen.device)
    pairs = [inputs.pairs[i] for i in mb]
    pol_c, pol_r = pair_logps(model, pairs, inputs.pad_id, cfg.use_bf16, cfg.packing)
    ref_c, ref_r = inputs.reference.take(idx, pol_c, pol_r)
    scores = [torch.tensor([getattr(p, side).reward for p in pairs], dtype=torch.float32, device=idx.device)
              for side in ("chosen", "rejected")]
    lengths = torch.tensor([len(p.chosen.ids) for p in pairs], device=idx.device) if loss.nll_weight else None
    out = loss(pol_c, pol_r, ref_c, ref_r, scores[0], scores[1], chosen_lengths=lengths)
    dist.backward(out.losses.sum() * scale)
    stats = {"loss": out.losses.detach(), "rewards/chosen": out.chosen_implicit_rewards,
             "rewards/rejected": out.rejected_implicit_rewards,
             "rewards/accuracies": (out.chosen_implicit_rewards > out.rejected_implicit_rewards).float(),
             "weights/mean": out.weights,
             "logps/chosen": pol_c.detach(), "logps/rejected": pol_r.detach()}
    return {key: float(value.sum()) * scale for key, value in stats.items()}


def train_iteration(model, inputs: TrainInputs, cfg: TrainConfig, loss: PreferenceLoss,
                    hooks: TrainHooks | None = None, dist: Dist | None = None) -> dict:
    """Train in place on `inputs.pairs`; returns the iteration's mean metrics (TRL names).

    A missing reference is allowed only for a pair in `reference_from_training`: the caller guarantees that the
    starting weights are the reference (no dropout either); training fills it in from its own forward and the
    record writes itself after that step (`References.flush`).
    With an active `dist` (optune.distributed) each step's pairs are split over processes; the loss is
    multiplied by the world size because DDP/FSDP average the processes' gradients. With `cfg.fsdp` the model is
    sharded (optune.distributed.sharding) before its optimizer is built.
    With `hooks.state_path` (single process), the training state is saved there every `cfg.save_steps` steps
    and, if present, training continues from it: the step plan is a function of the seed, so skipping
    the finished steps reproduces the uninterrupted run.
    """
    dist, hooks = dist or Dist(), hooks or TrainHooks()
    plan = step_plan(len(inputs.pairs), cfg, inputs.seed, dist.world)
    pending = inputs.reference.missing()
    if pending and (dist.active or pending - reference_from_training(len(inputs.pairs), cfg, inputs.seed)):
        raise ValueError("reference log-probs missing for pairs trained after the first update")
    if cfg.gradient_checkpointing:
        dist.unwrap(model).gradient_checkpointing_enable()
    if cfg.fsdp:
        model = dist.shard(model)  # before the optimizer: it is built on the shards, and keeps state for them only
    optimizer, scheduler = make_optimizer(model, cfg, len(plan))
    model, optimizer = dist.prepare(model, optimizer, cfg.batch_size)
    inputs = dataclasses.replace(inputs, reference=inputs.reference.to(next(model.parameters()).device))
    model.train()
    state_path = None if dist.active or not cfg.save_steps else hooks.state_path
    start, totals, rows = resume(state_path, model, optimizer, scheduler, plan, hooks.progress, hooks.log,
                                 hooks.state_then)
    for step, micro_batches in enumerate(plan):
        if step < start:
            continue
        stats = train_step(model, inputs, micro_batches, optimizer, cfg, loss, dist)
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        inputs.reference.flush()
        stats["rewards/margins"] = stats["rewards/chosen"] - stats["rewards/rejected"]
        stats["lr"] = scheduler.get_last_lr()[0]
        rows.append({"step": step, **stats})
        if hooks.log is not None:
            hooks.log(rows[-1])
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + value / len(plan)
        if state_path is not None and (step + 1) % cfg.save_steps == 0 and step + 1 < len(plan):
            save_train_state(state_path, model, optimizer, scheduler, step + 1, totals, rows)
        if hooks.progress is not None:
            hooks.progress.update(sum(len(mb) for mb in micro_batches))
            hooks.progress.set_postfix(loss=f"{stats['loss']:.4f}", acc=f"{stats['rewards/accuracies']:.2f}")
    if cfg.gradient_checkpointing:
        dist.unwrap(model).gradient_checkpointing_disable()
    totals["train/steps"] = len(plan)
    return totals


def train_step(model, inputs: TrainInputs, micro_batches: list[list[int]], optimizer, cfg: TrainConfig,
               loss: PreferenceLoss, dist) -> dict[str, float]:
    """One optimizer step over this process's share of the step's micro-batches (the scheduler steps after);
    the step's summed stats, averaged over processes."""
    n_step = sum(len(mb) for mb in micro_batches)
    mine, n_micro = rank_share(micro_batches, cfg.batch_size, dist.world, dist.rank)
    sums: dict[str, float] = {}
    for j in range(n_micro):
        mb, scale = (mine[j], dist.world / n_step) if j < len(mine) else (micro_batches[0][:1], 0.0)
        with dist.no_sync(model, sync=j == n_micro - 1):
            part = micro_batch(model, inputs, mb, scale, cfg, loss, dist)
        sums = {key: sums.get(key, 0.0) + value / dist.world for key, value in part.items()}
    stats = dict(zip(sums, dist.sum(list(sums.values()))))
    if cfg.max_grad_norm is not None:
        norm = dist.clip_grad_norm(model, cfg.max_grad_norm)  # None under DeepSpeed (its config clips)
        if norm is not None:
            stats["grad_norm"] = norm
    optimizer.step()
    return stats
