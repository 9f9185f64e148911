"""One iteration of preference training: reference log-probs, then DPO/wDPO updates pi_t -> pi_{t+1}.

A pair is a dict with "prompt_ids", "chosen_ids", "rejected_ids" (token ids) and "chosen_reward",
"rejected_reward". The loss of each optimizer step is the sum of per-pair losses divided by the number of
pairs in that step, so batch_size x grad_accum splits the same step in any way with the same gradient.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import torch

from optune.config import LossConfig, TrainConfig
from optune.losses import dpo_loss, pair_weights, sequence_logps, wdpo_loss
from optune.store import atomic_write


def collate(pairs: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen then rejected sequences, right-padded: input_ids, attention_mask, loss_mask all [2B, T]."""
    seqs = [(p["prompt_ids"], p["chosen_ids"]) for p in pairs] + [(p["prompt_ids"], p["rejected_ids"]) for p in pairs]
    width = max(len(a) + len(b) for a, b in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (prompt, response) in enumerate(seqs):
        n = len(prompt) + len(response)
        ids[i, :n] = torch.tensor(prompt + response, dtype=torch.long)
        attn[i, :n] = 1
        loss_mask[i, len(prompt):n] = 1
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask}


def _autocast(model, bf16: bool):
    device = next(model.parameters()).device.type
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def response_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor):
    """[B] summed log-probs of the response tokens, computing vocabulary logits only where they are needed.

    The output projection and log-softmax over the vocabulary are a large share of a small model's cost;
    prompt positions never need them. Models whose logits are post-processed (soft-capping, scaling) and
    models wrapped for several processes take the plain path through `sequence_logps`.
    """
    # A DDP/FSDP/DeepSpeed wrapper (optune.distributed) has neither method, so it takes the plain path: its
    # gradient synchronisation and parameter gathering run in its own forward, which the fast path would skip.
    decoder = getattr(model, "get_decoder", lambda: None)()
    head = getattr(model, "get_output_embeddings", lambda: None)()
    post = any(getattr(getattr(model, "config", None), k, None) for k in ("final_logit_softcapping", "logit_scale"))
    if decoder is None or head is None or post:
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return sequence_logps(logits, input_ids, loss_mask)
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    predicts = loss_mask[:, 1:].bool()  # position t predicts token t + 1
    logits = head(hidden[:, :-1][predicts]).float()  # [N response tokens, V]
    token_logps = logits.log_softmax(-1).gather(1, input_ids[:, 1:][predicts].unsqueeze(1)).squeeze(1)
    rows = predicts.nonzero()[:, 0]
    return torch.zeros(len(input_ids), dtype=token_logps.dtype, device=token_logps.device).index_add(0, rows, token_logps)


def pair_logps(model, pairs: list[dict], pad_id: int, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs [B] of the chosen and rejected responses (response tokens only)."""
    batch = {k: v.to(next(model.parameters()).device) for k, v in collate(pairs, pad_id).items()}
    with _autocast(model, bf16):
        logps = response_logps(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
    return logps[: len(pairs)], logps[len(pairs):]


@torch.no_grad()
def reference_logps(model, pairs: list[dict], pad_id: int, batch_size: int, bf16: bool, progress=None):
    """Log-probs of every pair under the frozen reference, as two lists of floats."""
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        c, r = pair_logps(model, pairs[start:start + batch_size], pad_id, bf16)
        chosen += c.tolist()
        rejected += r.tolist()
        if progress is not None:
            progress.update(len(pairs[start:start + batch_size]))
    model.train(was_training)
    return chosen, rejected


def per_pair_loss(policy_c, policy_r, ref_c, ref_r, rewards_c, rewards_r, cfg: LossConfig) -> torch.Tensor:
    if cfg.type == "dpo":
        return dpo_loss(policy_c, policy_r, ref_c, ref_r, cfg.beta1)
    return wdpo_loss(policy_c, policy_r, ref_c, ref_r, rewards_c, rewards_r, cfg.beta1, cfg.beta2)


def make_optimizer(model, cfg: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "rmsprop":
        optimizer = torch.optim.RMSprop(params, lr=cfg.lr)
    elif cfg.optimizer == "adamw":
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    else:
        optimizer = torch.optim.SGD(params, lr=cfg.lr)
    warmup = math.ceil(cfg.warmup_ratio * total_steps)
    name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[cfg.lr_schedule]
    return optimizer, get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)


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


STAT_KEYS = ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "weights/mean", "logps/chosen",
             "logps/rejected")


def micro_batch(model, pairs: list[dict], mb: list[int], tensors: tuple, scale: float, pad_id: int,
                cfg: TrainConfig, loss_cfg: LossConfig, dist) -> list[float]:
    """Forward/backward of one micro-batch with loss = scale x sum of per-pair losses; summed stats x scale."""
    ref_c_all, ref_r_all, rew_c_all, rew_r_all = tensors
    idx = torch.tensor(mb, device=ref_c_all.device)
    pol_c, pol_r = pair_logps(model, [pairs[i] for i in mb], pad_id, cfg.bf16)
    losses = per_pair_loss(pol_c, pol_r, ref_c_all[idx], ref_r_all[idx], rew_c_all[idx], rew_r_all[idx], loss_cfg)
    dist.backward(losses.sum() * scale)
    with torch.no_grad():
        chosen = loss_cfg.beta1 * (pol_c - ref_c_all[idx])
        rejected = loss_cfg.beta1 * (pol_r - ref_r_all[idx])
        w = pair_weights(rew_c_all[idx], rew_r_all[idx], loss_cfg.beta2) if loss_cfg.type == "wdpo" \
            else torch.ones(len(mb), device=idx.device)
        values = (losses, chosen, rejected, (chosen > rejected).float(), w, pol_c, pol_r)
        return [float(v.sum()) * scale for v in values]


def train_iteration(model, pairs: list[dict], ref: tuple[list, list], pad_id: int, cfg: TrainConfig,
                    loss_cfg: LossConfig, seed: int, progress=None, log=None, dist=None,
                    state_path: Path | None = None) -> dict:
    """Train in place on `pairs`; returns the iteration's mean metrics (TRL names).

    With an active `dist` (optune.distributed) each step's pairs are split over processes; the loss is
    multiplied by the world size because DDP/FSDP average the processes' gradients.
    With `state_path` (single process), the training state is saved there every `cfg.save_steps` steps
    and, if present, training continues from it: the step plan is a function of the seed, so skipping
    the finished steps reproduces the uninterrupted run.
    """
    from optune.distributed import Dist

    dist = dist or Dist()
    plan = step_plan(len(pairs), cfg, seed, dist.world)
    optimizer, scheduler = make_optimizer(model, cfg, len(plan))
    if cfg.gradient_checkpointing:
        dist.unwrap(model).gradient_checkpointing_enable()
    model, optimizer = dist.prepare(model, optimizer)
    model.train()
    device = next(model.parameters()).device
    tensors = tuple(torch.tensor(x, dtype=torch.float32, device=device) for x in ref) + tuple(
        torch.tensor([p[k] for p in pairs], dtype=torch.float32, device=device)
        for k in ("chosen_reward", "rejected_reward"))
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
                part = micro_batch(model, pairs, mb, tensors, scale, pad_id, cfg, loss_cfg, dist)
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


def save_train_state(path: Path, model, optimizer, scheduler, step: int, totals: dict, rows: list[dict]) -> None:
    """Weights, optimizer and schedule after `step` finished steps, with the metrics so far (atomic)."""
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "totals": totals, "rows": rows}
    atomic_write(path, lambda f: torch.save(state, f))


def resume(state_path: Path | None, model, optimizer, scheduler, plan: list, progress, log):
    """(finished steps, metric sums, log rows) of a saved training state, replayed into progress and log."""
    start, totals, rows = load_train_state(state_path, model, optimizer, scheduler)
    if log is not None:
        for row in rows:
            log(row)
    if start:
        print(f"training resumes after step {start} of {len(plan)} ({state_path.name})", flush=True)
        if progress is not None:
            progress.update(sum(len(mb) for step in plan[:start] for mb in step))
    return start, totals, rows


def load_train_state(path: Path | None, model, optimizer, scheduler) -> tuple[int, dict, list[dict]]:
    """(finished steps, metric sums, log rows) from a saved state, loaded into the objects; (0, {}, []) if none."""
    if path is None or not path.is_file():  # a save cut short by a kill left only a temp file (store cleans it)
        return 0, {}, []
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["totals"], state["rows"]
