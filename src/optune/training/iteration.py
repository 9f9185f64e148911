"""One iteration's training as the loop runs it: reference log-probs (stored once), LoRA, DPO/wDPO
updates, and pi_{t+1} saved as one atomic checkpoint directory (with its training metrics and log)."""

from __future__ import annotations

import math
from pathlib import Path

from optune.choices import Reference
from optune.clock import Clock
from optune.errors import UserError
from optune.losses import make_loss
from optune.models import lora
from optune.models.policy import load_model
from optune.pairs import Pair
from optune.runner.context import Context
from optune.store import damage, read_json, write_json, write_jsonl
from optune.training.logps import reference_logps
from optune.training.update import (
    References,
    TrainHooks,
    TrainInputs,
    has_dropout,
    reference_from_training,
    train_iteration,
)


def load_checkpoint(path, policy):
    """A checkpoint this run saved, as `load_model` loads it; a damaged one raises ValueError (one line)."""
    from safetensors import SafetensorError

    try:  # first, so that a broken config.json is named as such (transformers' message is long)
        read_json(Path(path) / "config.json")
    except ValueError as err:
        raise ValueError(f"config.json: {damage(err)}") from None
    try:
        return load_model(str(path), policy.dtype, policy.device)
    except (OSError, ValueError, UserError, SafetensorError) as err:
        # load_model's UserError starts with the path, which the caller names already
        raise ValueError(str(err).removeprefix(f"cannot load model {path}: ") or type(err).__name__) from None


def trained_before(ctx: Context, t: int) -> tuple[object, dict] | None:
    """(pi_{t+1}, its training metrics) where an earlier attempt of this unfinished iteration saved its
    checkpoint; None where there is none, or it is damaged (removed: training is redone from its start)."""
    store = ctx.store
    if not store.train_metrics(t).is_file():
        return None
    try:
        return load_checkpoint(store.checkpoint(t), ctx.cfg.policy), read_json(store.train_metrics(t))
    except ValueError as err:
        store.discard(store.checkpoint(t), damage(err), f"training iteration {t} again")
        return None


def store_reference(ctx: Context, t: int, pairs: list[Pair], ref: References, **counts: int) -> None:
    """iter_t/ref_logps.json: the pairs' reference log-probs, null where training has yet to fill them in."""
    def floats(values) -> list[float | None]:
        return [None if math.isnan(x) else x for x in values.tolist()]

    saved = read_json(ctx.store.ref_logps(t)) if not counts else counts
    counts = {k: saved[k] for k in ("from_sampler", "from_training")}
    ctx.store.write_json(ctx.store.ref_logps(t), {"prompt_ids": [p.prompt_id for p in pairs],
                                                  "chosen": floats(ref.chosen), "rejected": floats(ref.rejected),
                                                  **counts})


def reference(ctx: Context, t: int, pairs: list[Pair], model) -> References:
    """Reference log-probs, computed once per iteration before any update (so pi_t needs no second copy).

    NaN for the pairs training meets on its starting weights (`deferred`): training fills them in from its
    own forward, and `store_reference` records them as it does.
    """
    saved = saved_reference(ctx, t)
    if saved is not None and saved["prompt_ids"] == [p.prompt_id for p in pairs]:
        return References.of(saved["chosen"], saved["rejected"])
    sampled = sampler_reference(ctx, t, pairs)
    later = deferred(ctx, t, len(pairs), model)
    todo = [p for i, (p, ref) in enumerate(zip(pairs, sampled)) if ref is None and i not in later]
    ref_model = model
    if ctx.cfg.loss.reference == Reference.INITIAL and t > 0 and todo:
        ref_model = load_model(ctx.initial_model_path, ctx.cfg.policy.dtype, ctx.cfg.policy.device)
    tc = ctx.cfg.train
    with ctx.progress(f"iter {t} reference", len(todo)) as bar, lora.adapter_disabled(ref_model):
        mine = reference_logps(ref_model, ctx.dist.split(todo), ctx.tokenizer.pad_token_id,
                               tc.batch_size * 2, tc.bf16, bar, tc.packing)
    del ref_model
    shares = ctx.dist.gather(mine)  # each process scored a contiguous share of the pairs
    computed = iter(zip([x for c, _ in shares for x in c], [x for _, r in shares for x in r]))
    refs = [ref if ref is not None else (math.nan, math.nan) if i in later else next(computed)
            for i, ref in enumerate(sampled)]
    ref = References.of([c for c, _ in refs], [r for _, r in refs])
    store_reference(ctx, t, pairs, ref, from_sampler=sum(r is not None for r in sampled), from_training=len(later))
    return ref


def saved_reference(ctx: Context, t: int) -> dict | None:
    """iter_t/ref_logps.json as saved, or None. A damaged one is removed, and so is the training state saved
    with it (training filled in references as it went), so both are computed again from the start."""
    path = ctx.store.ref_logps(t)
    try:
        saved = read_json(path)
        missing = {"prompt_ids", "chosen", "rejected", "from_sampler", "from_training"} - set(saved)
        if missing:
            raise KeyError(min(missing))
        if not len(saved["prompt_ids"]) == len(saved["chosen"]) == len(saved["rejected"]):
            raise ValueError("its lists differ in length")
        return saved
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        ctx.store.discard(path, damage(err), "computing the reference log-probs again")
        if ctx.store.train_state(t).is_file():
            ctx.store.discard(ctx.store.train_state(t), "its reference log-probs were damaged",
                              f"training iteration {t} from its start")
        return None


def deferred(ctx: Context, t: int, n_pairs: int, model) -> set[int]:
    """Pairs whose reference log-probs training's own forward gives: those it meets on its starting weights
    (`policy.reference_from_training`), where those weights are the reference (pi_t, and a single process)
    and a training-mode forward equals an evaluation one (no dropout)."""
    pi_t = ctx.cfg.loss.reference == Reference.PREVIOUS or t == 0
    if not pi_t or ctx.dist.active or has_dropout(model):
        return set()
    return reference_from_training(n_pairs, ctx.cfg.train, ctx.cfg.seed + t)


def sampler_reference(ctx: Context, t: int, pairs: list[Pair]) -> list[tuple[float, float] | None]:
    """Per pair, the sampler's own (chosen, rejected) log-probs where they are this iteration's reference.

    They are log pi_t of responses sampled from pi_t at this iteration, so they are the reference when
    generation.sampler_logprobs is on and the reference is pi_t (loss.reference "previous", or iteration 0
    where pi_t = pi_0). Responses kept from earlier iterations were sampled from an older policy and get a
    forward pass under pi_t.
    """
    usable = ctx.cfg.generation.sampler_logprobs and (ctx.cfg.loss.reference == Reference.PREVIOUS or t == 0)
    out = []
    for p in pairs:
        c, r = p.chosen.logp, p.rejected.logp
        out.append((c, r) if usable and p.fresh(t) and c is not None and r is not None else None)
    return out


def pair_movement(ctx: Context, t: int, pairs: list[Pair], model) -> dict[str, float]:
    """Mean log-probs of the trained pairs under the reference (before: pi_t where pi_t is the reference) and
    under the trained policy (after), and DPO's implicit margin after training: whether training raised the
    chosen responses or only lowered the rejected ones more (both can fall: a known DPO failure)."""
    tc = ctx.cfg.train
    stored = read_json(ctx.store.ref_logps(t))  # with the references training filled in
    before = References.of(stored["chosen"], stored["rejected"])
    chosen, rejected = reference_logps(model, pairs, ctx.tokenizer.pad_token_id, tc.batch_size * 2, tc.bf16,
                                       packing=tc.packing)
    after = References.of(chosen, rejected)
    margin = ((after.chosen - before.chosen) - (after.rejected - before.rejected)).mean()
    prefix = "before" if ctx.cfg.loss.reference == Reference.PREVIOUS or t == 0 else "reference"
    return {f"logps/chosen_{prefix}": float(before.chosen.mean()),
            f"logps/rejected_{prefix}": float(before.rejected.mean()),
            "logps/chosen_after": float(after.chosen.mean()), "logps/rejected_after": float(after.rejected.mean()),
            "rewards/margins_after": ctx.cfg.loss.beta1 * float(margin)}


def release_generator(ctx: Context) -> None:
    """Free the generation backend's own memory (the vllm engine) before training needs it."""
    release = getattr(ctx.generator, "release", None)
    if release is not None:
        release()


def train(ctx: Context, t: int, pairs: list[Pair], model, clock: Clock) -> tuple[object, dict]:
    """pi_t (`model`) -> pi_{t+1}: (pi_{t+1}, the training metrics); the checkpoint (with its metrics) is written
    as one atomic directory."""
    store, cfg = ctx.store, ctx.cfg
    done = trained_before(ctx, t)
    if done is not None:
        if store.writer:  # a kill between the checkpoint's rename and this unlink left it behind
            store.train_state(t).unlink(missing_ok=True)
        return done
    release_generator(ctx)
    with clock.phase("training"):
        model = lora.attach(model, cfg.lora)  # pi_t itself without LoRA
        inputs = TrainInputs(pairs, reference(ctx, t, pairs, model), ctx.tokenizer.pad_token_id, seed=cfg.seed + t)
        log_rows: list[dict] = []
        loss = make_loss(cfg.loss.type, cfg.loss.beta1, cfg.loss.beta2, cfg.loss.nll_weight)
        with ctx.progress(f"iter {t} train", len(pairs) * cfg.train.epochs) as bar:
            hooks = TrainHooks(progress=bar, log=log_rows.append,
                               on_reference=lambda ref: store_reference(ctx, t, pairs, ref),
                               state_path=store.train_state(t) if store.writer else None)
            metrics = train_iteration(model, inputs, cfg.train, loss, hooks, ctx.dist)
        if pairs and not ctx.dist.active:
            metrics.update(pair_movement(ctx, t, pairs, model))
        state_dict = ctx.dist.full_state_dict()  # unsharded weights (FSDP/ZeRO-3); every process takes part
        trained = model

        def save(tmp):
            nonlocal trained
            trained = lora.save_merged(model, tmp, state_dict)
            ctx.tokenizer.save_pretrained(tmp)
            write_json(tmp / "train_metrics.json", metrics)
            write_jsonl(tmp / "train_log.jsonl", log_rows)

        store.save_dir(store.checkpoint(t), save)  # main process only
        if store.writer:
            store.train_state(t).unlink(missing_ok=True)  # the checkpoint supersedes the mid-iteration state
        if ctx.dist.active:  # every process continues from the saved pi_{t+1}, whatever wrapped it
            ctx.dist.barrier()
            trained = load_model(str(store.checkpoint(t)), cfg.policy.dtype, cfg.policy.device)
    return trained, metrics
