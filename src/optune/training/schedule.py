"""The optimisation schedule both trainers share (policy DPO and the reward model): optimizer and
learning-rate schedule, and the seeded plan of optimizer steps -> micro-batches -> example indices."""

from __future__ import annotations

import math
from typing import Protocol

import torch

from optune.config.run import TrainConfig


class OptimizerSettings(Protocol):
    """What `make_optimizer` reads: the policy's TrainConfig and the reward model's RewardTrainConfig both
    have these. A `weight_decay` attribute (AdamW only) is used where present; the policy has none (0)."""

    @property
    def optimizer(self) -> str: ...
    @property
    def lr(self) -> float: ...
    @property
    def lr_schedule(self) -> str: ...
    @property
    def warmup_ratio(self) -> float: ...


def make_optimizer(model, cfg: OptimizerSettings, total_steps: int):
    """Optimizer over the trainable parameters and its schedule: warmup over ceil(warmup_ratio x total_steps)
    steps, then linear/cosine decay to 0 at total_steps, or constant."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer
    if cfg.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(params, lr=cfg.lr)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=getattr(cfg, "weight_decay", 0.0))
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr)
    return optimizer, lr_scheduler(optimizer, cfg, total_steps)


def lr_scheduler(optimizer, cfg: OptimizerSettings, total_steps: int):
    """transformers' schedule of `cfg.lr_schedule` on `optimizer` (warmup as in `make_optimizer`)."""
    from transformers import get_scheduler

    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[cfg.lr_schedule]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


def steps_on_start_weights(cfg: OptimizerSettings, total_steps: int) -> int:
    """How many leading optimizer steps compute their forward on the starting weights.

    Step 0 does, and so does each next step while every step before it had learning rate 0: with warmup,
    transformers' schedules give the first step lr 0, and an update scaled by lr 0 leaves the weights as they
    were (SGD, RMSprop, AdamW alike; tests/unit/training/test_schedule.py).
    """
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = lr_scheduler(optimizer, cfg, total_steps)
    steps = min(1, total_steps)
    while steps < total_steps and scheduler.get_last_lr()[0] == 0:
        optimizer.step()  # no gradient: only keeps torch from warning about the order of the two calls
        scheduler.step()
        steps += 1
    return steps


def step_plan(n_pairs: int, cfg: TrainConfig, seed: int, world: int = 1) -> list[list[list[int]]]:
    """Optimizer steps -> micro-batches -> pair indices, over all epochs, in a seeded order.

    A step holds batch_size x grad_accum x world pairs: `world` processes each take a share (rank_share).
    """
    per_step = cfg.batch_size * cfg.grad_accum * world
    steps = []
    for epoch in range(cfg.epochs):
        order = torch.randperm(n_pairs, generator=torch.Generator().manual_seed(seed * 1000 + epoch)).tolist()
        for start in range(0, n_pairs, per_step):
            chunk = order[start:start + per_step]
            steps.append([chunk[i:i + cfg.batch_size] for i in range(0, len(chunk), cfg.batch_size)])
    return steps


def rank_share(step: list[list[int]], batch_size: int, world: int, rank: int) -> tuple[list[list[int]], int]:
    """This process's micro-batches of a step, and how many every process runs (the most any process has).

    Processes with fewer micro-batches run empty ones (a zero-weighted forward/backward), because DDP and FSDP
    need every process in every gradient all-reduce.
    """
    chunk = [i for mb in step for i in mb]
    size = -(-len(chunk) // world)
    shares = [chunk[r * size:(r + 1) * size] for r in range(world)]
    counts = [-(-len(share) // batch_size) for share in shares]
    mine = shares[rank]
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)], max(counts)
