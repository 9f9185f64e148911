"""Bradley-Terry reward-model training: resumable loop, periodic held-out accuracy, final export.

Layout of `output_dir` while training: `reward_config.yaml` (the config, so `--resume DIR` needs
nothing else), `resume.pt` (model, optimizer, scheduler, RNG and step; replaced atomically every
`save_every` steps), `train_log.jsonl` (one line per evaluation). When training ends the HF
checkpoint (model, tokenizer with chat template) and `reward_stats.json` are written, the latter
last, so its presence means "finished"; `resume.pt` is then removed.

Data order is a pure function of (seed, epoch), so a resumed run skips the batches already done
and continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from typing import Callable

import torch
import yaml
from tqdm import tqdm

from optune.config import to_dict
from optune.errors import UserError
from optune.losses import bradley_terry_loss
from optune.data.preferences import PreferencePair, read_preferences
from optune.reward.config import RewardTrainConfig, load_reward_config
from optune.reward.model import (
    STATS_FILE,
    encode,
    forward_scores,
    load_backbone,
    mean_std,
    render,
    score_sequences,
)

CONFIG_FILE = "reward_config.yaml"
RESUME_FILE = "resume.pt"
LOG_FILE = "train_log.jsonl"

EncodedPair = tuple[list[int], list[int]]


def encode_pairs(tokenizer, pairs: list[PreferencePair], max_length: int) -> list[EncodedPair]:
    """Render both sides of every pair with the RM's template and tokenise them once, up front."""
    chosen = [render(tokenizer, p["prompt"], p["chosen"], p["history"]) for p in pairs]
    rejected = [render(tokenizer, p["prompt"], p["rejected"], p["history"]) for p in pairs]
    return list(zip(encode(tokenizer, chosen, max_length), encode(tokenizer, rejected, max_length)))


def epoch_batches(encoded: list[EncodedPair], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of pair indices, length-grouped within chunks of 32 batches.

    Grouping similar lengths keeps dynamic padding small (about 2x faster on HH data) while the
    chunk shuffle keeps batches random. Deterministic in (seed, epoch) so resuming can skip ahead.
    """
    rng = random.Random(seed * 100_003 + epoch)
    order = list(range(len(encoded)))
    rng.shuffle(order)
    chunk = batch_size * 32
    batches = []
    for start in range(0, len(order), chunk):
        group = sorted(order[start : start + chunk], key=lambda i: max(len(encoded[i][0]), len(encoded[i][1])))
        batches.extend(group[k : k + batch_size] for k in range(0, len(group), batch_size))
    rng.shuffle(batches)
    return batches


def pair_scores(model, tokenizer, encoded: list[EncodedPair], batch_size: int) -> tuple[list[float], list[float]]:
    """Raw (chosen, rejected) scores in eval mode."""
    flat = [seq for pair in encoded for seq in pair]
    scores = score_sequences(model, tokenizer, flat, batch_size * 2)
    return scores[0::2], scores[1::2]


def heldout_metrics(model, tokenizer, encoded: list[EncodedPair], batch_size: int) -> dict[str, float]:
    """Pairwise accuracy (ties count as wrong), BT loss and mean margin on held-out pairs."""
    chosen, rejected = pair_scores(model, tokenizer, encoded, batch_size)
    c, r = torch.tensor(chosen), torch.tensor(rejected)
    return {
        "eval/accuracy": float((c > r).float().mean()),
        "eval/loss": float(bradley_terry_loss(c, r).mean()),
        "eval/margin": float((c - r).mean()),
        "eval/pairs": len(chosen),
    }


def _save_atomic(obj, path: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".pt")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_text_atomic(path: str, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def prepare_output(cfg: RewardTrainConfig, resume: bool) -> None:
    """Refuse to mix runs: a finished model or an unfinished run in the way is an error."""
    out = cfg.output_dir
    if os.path.isfile(os.path.join(out, STATS_FILE)):
        raise UserError(f"{out} already holds a trained reward model; choose another output_dir")
    if resume:
        if not os.path.isfile(os.path.join(out, RESUME_FILE)):
            raise UserError(f"{out} has no {RESUME_FILE} to resume from")
        return
    if os.path.isfile(os.path.join(out, RESUME_FILE)):
        raise UserError(f"{out} holds an unfinished run; resume it with --resume {out} or choose another output_dir")


def write_config(cfg: RewardTrainConfig) -> None:
    """The run's config in output_dir (what --resume reads); written once data and backbone are checked."""
    os.makedirs(cfg.output_dir, exist_ok=True)
    _write_text_atomic(os.path.join(cfg.output_dir, CONFIG_FILE), yaml.safe_dump(to_dict(cfg), sort_keys=False))


def config_for_resume(output_dir: str) -> RewardTrainConfig:
    path = os.path.join(output_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{output_dir} has no {CONFIG_FILE}; it is not a reward training directory")
    cfg = load_reward_config(path)
    cfg.output_dir = output_dir
    return cfg


def _read_data(cfg: RewardTrainConfig, log: Callable[[str], None]):
    """Read (and so check) the preference files before the model is loaded: bad input fails fast."""
    if not cfg.train_files:
        raise UserError("config train_files is empty: give at least one preference file")
    train = read_preferences(cfg.train_files)
    log(f"train: {train.summary()}")
    heldout = read_preferences(cfg.eval_files) if cfg.eval_files else None
    if heldout:
        log(f"held-out: {heldout.summary()}")
    return train.pairs, heldout.pairs if heldout else []


def _schedule(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(warmup, 1)
        return max(0.0, (total - step) / max(total - warmup, 1))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def train_reward_model(
    cfg: RewardTrainConfig,
    resume: bool = False,
    log: Callable[[str], None] = print,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Train, evaluate and export; returns the final stats dict (also in reward_stats.json).

    `on_step(step)` runs after each optimizer step (tests use it to simulate an interruption).
    """
    prepare_output(cfg, resume)
    train_pairs, eval_pairs = _read_data(cfg, log)
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_backbone(cfg.backbone, cfg.gguf_file)
    if not resume:  # bad input has failed by now, so no output directory is left half-written
        write_config(cfg)
    enc_train = encode_pairs(tokenizer, train_pairs, cfg.max_length)
    enc_eval = encode_pairs(tokenizer, eval_pairs, cfg.max_length)
    steps_per_epoch = math.ceil(len(enc_train) / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _schedule(optimizer, int(cfg.warmup_ratio * total), total)
    state = {"step": 0, "elapsed_s": 0.0, "loss_sum": 0.0, "loss_n": 0}
    resume_path = os.path.join(cfg.output_dir, RESUME_FILE)
    if resume:
        ckpt = torch.load(resume_path, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        torch.set_rng_state(ckpt["torch_rng"])
        state = ckpt["state"]
        log(f"resumed at step {state['step']} of {total}")
    eval_sample = random.Random(cfg.seed).sample(enc_eval, min(cfg.eval_max_pairs, len(enc_eval)))
    _run_steps(cfg, model, tokenizer, optimizer, scheduler, state, total, enc_train, eval_sample, log, on_step)
    return _finish(cfg, model, tokenizer, enc_train, enc_eval, state, log)


def _run_steps(cfg, model, tokenizer, optimizer, scheduler, state, total, enc_train, eval_sample, log, on_step):
    """The optimisation loop from state["step"] to `total`, with periodic eval and checkpoints."""
    steps_per_epoch = math.ceil(len(enc_train) / cfg.batch_size)
    bar = tqdm(total=total, initial=state["step"], desc="reward train", unit="step", dynamic_ncols=True)
    model.train()
    batches: dict[int, list[list[int]]] = {}
    while state["step"] < total:
        epoch, offset = divmod(state["step"], steps_per_epoch)
        if epoch not in batches:
            batches = {epoch: epoch_batches(enc_train, cfg.batch_size, cfg.seed, epoch)}
        batch = batches[epoch][offset]
        t0 = time.perf_counter()
        seqs = [enc_train[i][0] for i in batch] + [enc_train[i][1] for i in batch]
        scores = forward_scores(model, tokenizer, seqs)
        loss = bradley_terry_loss(scores[: len(batch)], scores[len(batch) :]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["loss_sum"] += loss.item()
        state["loss_n"] += 1
        state["elapsed_s"] += time.perf_counter() - t0
        bar.update(1)
        bar.set_postfix(loss=f"{state['loss_sum'] / state['loss_n']:.4f}")
        step = state["step"]
        if eval_sample and (step % cfg.eval_every == 0) and step < total:
            _log_eval(cfg, model, tokenizer, eval_sample, state, scheduler, bar.write)
            model.train()
        if step % cfg.save_every == 0 and step < total:
            _save_atomic(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(), "state": dict(state)},
                os.path.join(cfg.output_dir, RESUME_FILE),
            )
        if on_step:
            on_step(step)
    bar.close()


def _log_eval(cfg, model, tokenizer, encoded, state, scheduler, write) -> dict:
    t0 = time.perf_counter()
    metrics = heldout_metrics(model, tokenizer, encoded, cfg.batch_size)
    entry = {
        "step": state["step"],
        "train/loss": state["loss_sum"] / max(state["loss_n"], 1),
        **metrics,
        "lr": scheduler.get_last_lr()[0],
        "time/train_s": round(state["elapsed_s"], 2),
        "time/eval_s": round(time.perf_counter() - t0, 2),
    }
    state["loss_sum"], state["loss_n"] = 0.0, 0
    with open(os.path.join(cfg.output_dir, LOG_FILE), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")
    write(
        f"step {entry['step']}: train loss {entry['train/loss']:.4f}, held-out accuracy "
        f"{entry['eval/accuracy']:.4f} on {entry['eval/pairs']} pairs, margin {entry['eval/margin']:.3f}"
    )
    return entry


def _finish(cfg, model, tokenizer, enc_train, enc_eval, state, log) -> dict:
    """Final full held-out eval, reward stats on a training sample, atomic export."""
    final = _log_eval(cfg, model, tokenizer, enc_eval, state, _NoSched(), log) if enc_eval else {}
    sample = random.Random(cfg.seed + 1).sample(enc_train, min(cfg.stats_max_pairs, len(enc_train)))
    chosen, rejected = pair_scores(model, tokenizer, sample, cfg.batch_size)
    stats = mean_std(chosen + rejected)
    result = {
        "mean": stats.mean,
        "std": stats.std,
        "n_scores": len(chosen) + len(rejected),
        "train_accuracy_sample": sum(c > r for c, r in zip(chosen, rejected)) / len(chosen),
        "steps": state["step"],
        "train_time_s": round(state["elapsed_s"], 1),
        "max_length": cfg.max_length,
        "backbone": cfg.backbone,
        **{k: v for k, v in final.items() if k.startswith("eval/")},
    }
    _export(cfg, model, tokenizer, result)
    log(f"saved reward model to {cfg.output_dir} (reward mean {stats.mean:.4f}, std {stats.std:.4f})")
    return result


class _NoSched:
    """Stands in for the scheduler at the final evaluation (lr is 0 there)."""

    def get_last_lr(self) -> list[float]:
        return [0.0]


def _export(cfg: RewardTrainConfig, model, tokenizer, result: dict) -> None:
    """Write model + tokenizer into a temp dir, move the files in, reward_stats.json last."""
    out = cfg.output_dir
    model.config.optune_max_length = cfg.max_length
    tmp = tempfile.mkdtemp(dir=out, prefix=".export-")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name in os.listdir(tmp):
            os.replace(os.path.join(tmp, name), os.path.join(out, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _write_text_atomic(os.path.join(out, STATS_FILE), json.dumps(result, indent=2) + "\n")
    resume_path = os.path.join(out, RESUME_FILE)
    if os.path.exists(resume_path):
        os.unlink(resume_path)
