"""Bradley-Terry reward-model training: resumable loop, periodic held-out accuracy, final export.

Layout of `output_dir` (created all at once, optune.store.create_dir, and locked while training):
`reward_config.yaml` (the config, so `--resume DIR` needs nothing else), `train_state.pt` (model,
optimizer, schedule, RNG, step and the log so far: optune.training.state, replaced atomically every
`save_every` steps), `train_log.jsonl` (one line per evaluation, rewritten from the state's rows).
When training ends the HF checkpoint (model, tokenizer with chat template) and `reward_stats.json` are
written, the latter last, so its presence means "finished"; `train_state.pt` is then removed.

The optimizer and learning-rate schedule are the policy trainer's (optune.training.schedule). Data order
is a pure function of (seed, epoch), so a resumed run skips the batches already done and continues
exactly as the uninterrupted run would have. Every file goes through optune.store's atomic writers.

Damaged from outside, a resume's files are named in one line: a train_state.pt that does not read or does not
fit is removed and training starts from step 0 (the same result); a damaged reward_config.yaml, or the
reward_stats.json of a finished run, stops with exit 2 and the way out (neither can be redone in place).
"""

from __future__ import annotations

import math
import os
import random
import shlex
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml
from tqdm import tqdm

from optune.config.run import to_dict
from optune.data.preferences import PreferencePair, read_preferences
from optune.errors import Damaged, RunFailed, UserError
from optune.losses import bradley_terry_loss
from optune.reward.hf import STATS_FILE, encode, forward_scores, render, score_sequences
from optune.rewardmodel.config import RewardTrainConfig, load_reward_config
from optune.rewardmodel.model import checked_backbone, load_backbone, mean_std
from optune.store import (
    WriteError,
    atomic_save_files,
    atomic_write_text,
    check_new_dir,
    clean_temporaries,
    create_dir,
    damage,
    read_json,
    write_json,
    write_jsonl,
)
from optune.store.lock import DirLock
from optune.training.schedule import make_optimizer
from optune.training.state import load_train_state, save_train_state

CONFIG_FILE = "reward_config.yaml"
STATE_FILE = "train_state.pt"
LOG_FILE = "train_log.jsonl"
OLD_RESUME_FILE = "resume.pt"
"""What versions before the shared training state saved; such a run cannot be continued."""

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
    batches: list[list[int]] = []
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


def prepare_output(cfg: RewardTrainConfig, resume: bool) -> DirLock | None:
    """Refuse to mix runs; a resumed directory is locked and cleaned of a killed run's temporaries.

    A new run only checks that output_dir can be created (it is made later, once data and backbone are
    checked); a resumed one must hold this version's reward_config.yaml.
    """
    out = Path(cfg.output_dir)
    if (out / OLD_RESUME_FILE).is_file() and not (out / STATS_FILE).is_file():
        raise UserError(f"{out} holds an unfinished run of an older optune ({OLD_RESUME_FILE}), which this version "
                        "cannot continue; train again into a new output_dir")
    if not resume:
        if (out / STATS_FILE).is_file():
            raise UserError(f"{out} already holds a trained reward model; choose another output_dir")
        if (out / CONFIG_FILE).is_file():
            raise UserError(f"{out} holds an unfinished run; resume it with --resume {out} or choose another "
                            "output_dir")
        check_new_dir(out)
        return None
    if not (out / CONFIG_FILE).is_file():
        raise UserError(f"{out} has no {CONFIG_FILE}: it is not a reward training directory")
    lock = DirLock.acquire(out, "reward training directory")
    clean_temporaries(out)
    return lock


def config_for_resume(output_dir: str) -> RewardTrainConfig:
    path = os.path.join(output_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        raise UserError(f"{output_dir} has no {CONFIG_FILE}; it is not a reward training directory")
    check_saved_config(Path(path))
    cfg = load_reward_config(path)
    cfg.output_dir = output_dir
    return cfg


def check_saved_config(path: Path) -> None:
    """The run's own reward_config.yaml (all of its keys, as the run wrote it), readable; a damaged one stops with
    one line (`Damaged`, exit 2): filled in with defaults, it would continue another training than the one saved."""
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not a YAML mapping")
        for key in ("backbone", "train_files"):  # written by every version; no default stands in for them
            if key not in saved:
                raise KeyError(key)
    except yaml.MarkedYAMLError as err:
        problem = f"not valid YAML at line {err.problem_mark.line + 1}" if err.problem_mark else "not valid YAML"
    except yaml.YAMLError:
        problem = "not valid YAML"
    except (OSError, ValueError, KeyError) as err:
        problem = damage(err)
    else:
        return
    raise Damaged(f"{path} is damaged ({problem}); it is the config the run was started with, which a resume "
                  "continues: restore it, or train again into a new output_dir") from None


def finished_stats(out: Path) -> dict:
    """A finished run's reward_stats.json; a damaged one stops with one line (`Damaged`, exit 2): it is the trained
    model's score mean and std, so it is not rewritten without the training that gave it."""
    path = out / STATS_FILE
    try:
        stats = read_json(path)
        if not isinstance(stats, dict):
            raise ValueError("not a JSON object")
        for key in ("mean", "std"):
            if not isinstance(stats.get(key), int | float) or isinstance(stats[key], bool):
                raise ValueError(f"no number {key!r} in it")
        return stats
    except (OSError, ValueError) as err:
        raise Damaged(f"{path} is damaged ({damage(err)}); it marks the reward model finished and holds its score "
                      f"mean and std: restore it, or remove it and run optune reward train --resume "
                      f"{shlex.quote(str(out))} to train the model again from step 0") from None


def _read_data(cfg: RewardTrainConfig, log: Callable[[str], None]):
    """Read (and so check) the preference files before the model is loaded: bad input fails fast."""
    if not cfg.train_files:
        raise UserError("config train_files is empty: give at least one preference file")
    train = read_preferences(cfg.train_files)
    heldout = read_preferences(cfg.eval_files) if cfg.eval_files else None  # both read before either is logged
    log(f"train: {train.summary()}")
    if heldout:
        log(f"held-out: {heldout.summary()}")
    return train.pairs, heldout.pairs if heldout else []


def train_reward_model(
    cfg: RewardTrainConfig,
    resume: bool = False,
    log: Callable[[str], None] = print,
    on_step: Callable[[int], None] | None = None,
) -> dict:
    """Train, evaluate and export; returns the final stats dict (also in reward_stats.json).

    `on_step(step)` runs after each optimizer step (tests use it to simulate an interruption).
    """
    lock = prepare_output(cfg, resume)
    try:
        out = Path(cfg.output_dir)
        if resume and (out / STATS_FILE).is_file():
            result = finished_stats(out)
            (out / STATE_FILE).unlink(missing_ok=True)  # a kill after the stats, before this unlink
            log(f"{out} is finished already ({STATS_FILE}); nothing left to do")
            return result
        checked_backbone(cfg.backbone, cfg.gguf_file)  # a missing path fails before the data is read
        train_pairs, eval_pairs = _read_data(cfg, log)
        torch.manual_seed(cfg.seed)
        model, tokenizer = load_backbone(cfg.backbone, cfg.gguf_file)
        if lock is None:  # bad input has failed by now, so no output directory is left half-written
            config = yaml.safe_dump(to_dict(cfg), sort_keys=False)
            lock = create_dir(out, lambda tmp: atomic_write_text(tmp / CONFIG_FILE, config))
        try:
            return _train(cfg, model, tokenizer, train_pairs, eval_pairs, log, on_step)
        except WriteError as err:  # exit 3: failed midway, resumable (optune.errors)
            raise RunFailed(f"{err}; the run stopped midway with every file it wrote complete: once that is fixed, "
                            f"resume it with: optune reward train --resume {shlex.quote(str(out))}") from err
    finally:
        if lock is not None:
            lock.release()


def _train(cfg, model, tokenizer, train_pairs, eval_pairs, log, on_step) -> dict:
    enc_train = encode_pairs(tokenizer, train_pairs, cfg.max_length)
    enc_eval = encode_pairs(tokenizer, eval_pairs, cfg.max_length)
    plan = step_plan(enc_train, cfg)
    optimizer, scheduler = make_optimizer(model, cfg, len(plan))
    state_path = Path(cfg.output_dir) / STATE_FILE
    step, totals, rows = load_train_state(state_path, model, optimizer, scheduler, "training from step 0",
                                          lambda state: state_problem(state, len(plan)))
    totals = totals or {"elapsed_s": 0.0, "loss_sum": 0.0, "loss_n": 0}
    if step:
        log(f"resumed at step {step} of {len(plan)}")
    # the log is derived from the state's rows: an evaluation logged after the last save is redone, not doubled
    log_path = Path(cfg.output_dir) / LOG_FILE
    write_jsonl(log_path, rows) if rows else log_path.unlink(missing_ok=True)
    eval_sample = random.Random(cfg.seed).sample(enc_eval, min(cfg.eval_max_pairs, len(enc_eval)))
    run = _Run(cfg, model, tokenizer, optimizer, scheduler, totals, rows, state_path)
    run.steps(plan, step, enc_train, eval_sample, on_step)
    return _finish(run, enc_train, enc_eval, len(plan), log)


def state_problem(state: dict, steps: int) -> str | None:
    """What in a saved state (checked by optune.training.state) this trainer cannot continue from: a step past
    its plan, running sums or log rows that are not its own."""
    if not state["step"] <= steps:
        return f"it is at step {state['step']} of a plan of {steps}"
    totals = state["totals"]
    if totals and not all(isinstance(totals.get(k), int | float) for k in ("elapsed_s", "loss_sum", "loss_n")):
        return "its running sums are not this trainer's"
    if not all(isinstance(row, dict) and isinstance(row.get("step"), int) for row in state["rows"]):
        return "its log rows are not this trainer's"
    return None


def step_plan(encoded: list[EncodedPair], cfg: RewardTrainConfig) -> list[list[int]]:
    """The batch of every optimizer step: `epoch_batches` of successive epochs, cut at max_steps or at the
    fraction of the last epoch that `epochs` asks for."""
    per_epoch = math.ceil(len(encoded) / cfg.batch_size)
    total = cfg.max_steps or max(1, math.ceil(cfg.epochs * per_epoch))
    plan: list[list[int]] = []
    for epoch in range(math.ceil(total / per_epoch)):
        plan.extend(epoch_batches(encoded, cfg.batch_size, cfg.seed, epoch))
    return plan[:total]


class _Run:
    """One training run's objects and running sums (totals: elapsed_s, loss_sum, loss_n; rows: the log)."""

    def __init__(self, cfg, model, tokenizer, optimizer, scheduler, totals: dict, rows: list[dict], state_path):
        self.cfg, self.model, self.tokenizer = cfg, model, tokenizer
        self.optimizer, self.scheduler = optimizer, scheduler
        self.totals, self.rows, self.state_path = totals, rows, state_path
        self.step = 0

    def steps(self, plan, start, enc_train, eval_sample, on_step) -> None:
        """The optimisation loop from `start` to the end of the plan, with periodic eval and saved states."""
        cfg, totals = self.cfg, self.totals
        total = len(plan)
        self.model.train()
        # closed however the loop ends, so an error line never shares a line with the bar
        with tqdm(total=total, initial=start, desc="reward train", unit="step", dynamic_ncols=True) as bar:
            for step in range(start + 1, total + 1):
                self.step = step
                self.optimise([enc_train[i] for i in plan[step - 1]])
                bar.update(1)
                bar.set_postfix(loss=f"{totals['loss_sum'] / totals['loss_n']:.4f}")
                if eval_sample and step % cfg.eval_every == 0 and step < total:
                    self.evaluate(eval_sample, bar.write)
                    self.model.train()
                if step % cfg.save_every == 0 and step < total:
                    save_train_state(self.state_path, self.model, self.optimizer, self.scheduler, step, totals,
                                     self.rows)
                if on_step:
                    on_step(step)
        self.step = total

    def optimise(self, pairs: list[EncodedPair]) -> None:
        """One optimizer step on a batch of encoded pairs (mean BT loss), added to the running sums."""
        t0 = time.perf_counter()
        scores = forward_scores(self.model, self.tokenizer, [c for c, _ in pairs] + [r for _, r in pairs])
        loss = bradley_terry_loss(scores[: len(pairs)], scores[len(pairs):]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.totals["loss_sum"] += loss.item()
        self.totals["loss_n"] += 1
        self.totals["elapsed_s"] += time.perf_counter() - t0

    def evaluate(self, encoded, write) -> dict:
        """Held-out metrics now, appended to the log (train_log.jsonl is rewritten from the rows)."""
        t0 = time.perf_counter()
        metrics = heldout_metrics(self.model, self.tokenizer, encoded, self.cfg.batch_size)
        totals = self.totals
        entry = {
            "step": self.step,
            "train/loss": totals["loss_sum"] / max(totals["loss_n"], 1),
            **metrics,
            "lr": self.scheduler.get_last_lr()[0],
            "time/train_s": round(totals["elapsed_s"], 2),
            "time/eval_s": round(time.perf_counter() - t0, 2),
        }
        totals["loss_sum"], totals["loss_n"] = 0.0, 0
        self.rows.append(entry)
        write_jsonl(Path(self.cfg.output_dir) / LOG_FILE, self.rows)
        write(f"step {entry['step']}: train loss {entry['train/loss']:.4f}, held-out accuracy "
              f"{entry['eval/accuracy']:.4f} on {entry['eval/pairs']} pairs, margin {entry['eval/margin']:.3f}")
        return entry


def _finish(run: _Run, enc_train, enc_eval, steps: int, log) -> dict:
    """Final full held-out eval, reward stats on a training sample, atomic export."""
    cfg = run.cfg
    final = run.evaluate(enc_eval, log) if enc_eval else {}
    sample = random.Random(cfg.seed + 1).sample(enc_train, min(cfg.stats_max_pairs, len(enc_train)))
    chosen, rejected = pair_scores(run.model, run.tokenizer, sample, cfg.batch_size)
    stats = mean_std(chosen + rejected)
    result = {
        "mean": stats.mean,
        "std": stats.std,
        "n_scores": len(chosen) + len(rejected),
        "train_accuracy_sample": sum(c > r for c, r in zip(chosen, rejected)) / len(chosen),
        "steps": steps,
        "train_time_s": round(run.totals["elapsed_s"], 1),
        "max_length": cfg.max_length,
        "backbone": cfg.backbone,
        **{k: v for k, v in final.items() if k.startswith("eval/")},
    }
    _export(cfg, run.model, run.tokenizer, result)
    log(f"saved reward model to {cfg.output_dir} (reward mean {stats.mean:.4f}, std {stats.std:.4f})")
    return result


def _export(cfg: RewardTrainConfig, model, tokenizer, result: dict) -> None:
    """Model + tokenizer moved into output_dir file by file, reward_stats.json last (its presence = finished)."""
    out = Path(cfg.output_dir)
    model.config.optune_max_length = cfg.max_length

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    atomic_save_files(out, save)
    write_json(out / STATS_FILE, result)
    (out / STATE_FILE).unlink(missing_ok=True)
