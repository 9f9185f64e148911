"""The OPTune loop (Algorithm 1 of the paper; rho = 1 is Algorithm 2, fully online iterative DPO).

1. Iteration 0: sample two responses for every prompt from pi_0, score them, train pi_0 -> pi_1.
   It is the same for every variant, so a run may start from another run's finished iteration 0.
2. Iteration t >= 1: rank prompts by the reward of their current chosen response (lowest first) and pick
   ceil(rho * |P|) of them ("optune"), the same count at random ("random"), or all ("full").
3. Regenerate two responses with pi_t for the picked prompts only; every other prompt keeps its stored
   responses and rewards. Score only the new responses.
4. Build pairs for all prompts: chosen = higher reward, rejected = lower; pairs with equal rewards carry no
   preference and are dropped (by default) and counted.
5. Train pi_t -> pi_{t+1} with DPO (Eq. 5) or wDPO (Eq. 6), pi_t frozen as the reference (or pi_0).
6. Score one greedy response per held-out prompt from pi_{t+1}: the curve every benchmark compares.

Every step writes its results atomically to the run directory (see optune.store) before the next one
starts, so a run killed at any moment resumes where it stopped without redoing finished batches.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from optune import lora
from optune.config import RunConfig
from optune.distributed import Dist, batched
from optune.generation import Generator
from optune.losses import pair_weights
from optune.policy import load_model
from optune.rewards import RewardBackend, checked_score
from optune.selection import select_prompts
from optune.store import RunStore, atomic_save_dir, is_writer, read_json, read_jsonl, write_json, write_jsonl
from optune.training import reference_logps, train_iteration


@dataclass
class Context:
    """Everything an iteration needs; built once by `optune.commands.run`."""

    cfg: RunConfig
    store: RunStore
    model: object
    tokenizer: object
    generator: Generator
    reward: RewardBackend
    prompts: list[dict]
    heldout: list[dict]
    initial_model_path: str
    tracker: object = None
    times: dict = field(default_factory=dict)
    dist: Dist = field(default_factory=Dist)
    """Processes under `accelerate launch` (inactive in a plain run); see optune.distributed."""


def _bar(desc: str, total: int):
    return tqdm(total=total, desc=desc, unit="it", leave=False, dynamic_ncols=True, disable=not is_writer())


class Timer:
    """Adds elapsed seconds to ctx.times[key]."""

    def __init__(self, times: dict, key: str):
        self.times, self.key = times, key

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.times[self.key] = self.times.get(self.key, 0.0) + time.perf_counter() - self.start


def chosen_reward(entry: dict) -> float:
    return max(r["reward"] for r in entry["responses"])


def select(ctx: Context, t: int, state: dict[str, dict]) -> list[int]:
    """Indices of prompts to (re)generate at iteration t, stored so a resumed run picks the same ones."""
    path = ctx.store.iter_dir(t) / "selection.json"
    if path.is_file():
        ids = set(read_json(path)["prompt_ids"])
        return [i for i, p in enumerate(ctx.prompts) if p["id"] in ids]
    if t == 0:
        picked = list(range(len(ctx.prompts)))
    else:
        sel = ctx.cfg.selection
        rewards = [chosen_reward(state[p["id"]]) for p in ctx.prompts]
        picked = select_prompts(rewards, sel.rho, sel.strategy, seed=ctx.cfg.seed * 7919 + t).tolist()
    write_json(path, {"iteration": t, "prompt_ids": [ctx.prompts[i]["id"] for i in picked]})
    return picked


def sample_row(sample) -> dict:
    """A Sample as stored in gen/batch files; `logp` only where the backend gave one (vllm)."""
    return {k: v for k, v in vars(sample).items() if not (k == "logp" and v is None)}


def policy_path(ctx: Context, t: int, trained: bool = False) -> str:
    """The checkpoint on disk that holds the in-memory policy: pi_t at iteration t, or pi_{t+1} once trained.

    Backends that load weights themselves (vllm) sample from it; the loop writes pi_{t+1} before using it.
    """
    if trained:
        return str(ctx.store.checkpoint(t))
    return str(ctx.store.checkpoint(t - 1)) if t > 0 else ctx.initial_model_path


def release_generator(ctx: Context) -> None:
    """Free the generation backend's own memory (the vllm engine) before training needs it."""
    release = getattr(ctx.generator, "release", None)
    if release is not None:
        release()


def generate_and_score(ctx: Context, t: int, picked: list[int]) -> list[dict]:
    """Two fresh responses for each picked prompt, scored; one atomic file per batch (resumable)."""
    cfg = ctx.cfg
    per_batch = max(1, cfg.generation.batch_size // 2)

    def generate(indices: list[int]) -> list[dict]:
        seed = cfg.seed * 1_000_003 + t * 10_007 + indices[0]
        out = ctx.generator.generate(ctx.model, [ctx.prompts[i]["ids"] for i in indices], n=2, seed=seed,
                                     path=policy_path(ctx, t))
        return [{"prompt_id": ctx.prompts[i]["id"], "samples": [sample_row(s) for s in samples]}
                for i, samples in zip(indices, out)]

    it = ctx.store.iter_dir(t)
    with Timer(ctx.times, "generation"), _bar(f"iter {t} generate", len(picked)) as bar:
        rows = batched(ctx.dist, ctx.store, it / "gen", picked, per_batch, generate, bar)
    by_id = {p["id"]: p for p in ctx.prompts}

    def score(batch: list[dict]) -> list[dict]:
        records = [by_id[r["prompt_id"]] for r in batch for _ in r["samples"]]
        texts = [s["text"] for r in batch for s in r["samples"]]
        scores = checked_score(ctx.reward, records, texts)
        return [{"prompt_id": r["prompt_id"], "rewards": scores[2 * k:2 * k + 2]} for k, r in enumerate(batch)]

    with Timer(ctx.times, "rewarding"), _bar(f"iter {t} score", len(rows)) as bar:
        scores = batched(ctx.dist, ctx.store, it / "score", rows, max(1, cfg.reward.batch_size // 2), score, bar)
    for row, sc in zip(rows, scores):
        for sample, reward in zip(row["samples"], sc["rewards"]):
            sample.update(reward=reward, generated_at=t)
    return rows


def merge(ctx: Context, t: int, state: dict[str, dict], fresh: list[dict]) -> dict[str, dict]:
    """Replace the picked prompts' responses; keep everyone else's. Written as iter_t/responses.jsonl."""
    new_state = dict(state)
    for row in fresh:
        new_state[row["prompt_id"]] = {"prompt_id": row["prompt_id"], "responses": row["samples"]}
    write_jsonl(ctx.store.iter_dir(t) / "responses.jsonl", [new_state[p["id"]] for p in ctx.prompts])
    return new_state


def build_pairs(ctx: Context, t: int, state: dict[str, dict], labelled: bool = False) -> tuple[list[dict], int]:
    """Chosen/rejected pairs for every prompt; ties dropped (and counted) unless loss.drop_ties is false.

    Online, chosen is the higher reward. `labelled` (offline data): the first response is the chosen one
    whatever the rewards say, and equal rewards are no reason to drop a human label.
    """
    pairs, ties, rows = [], 0, []
    for p in ctx.prompts:
        a, b = state[p["id"]]["responses"]
        tie = a["reward"] == b["reward"] and not labelled
        chosen, rejected = (a, b) if labelled or a["reward"] >= b["reward"] else (b, a)
        rows.append({"prompt_id": p["id"], "chosen_reward": chosen["reward"], "rejected_reward": rejected["reward"],
                     "chosen_generated_at": chosen["generated_at"], "tie": tie,
                     "trained": not (tie and ctx.cfg.loss.drop_ties)})
        ties += tie
        if rows[-1]["trained"]:
            pairs.append({"prompt_id": p["id"], "prompt_ids": p["ids"], "chosen_ids": chosen["ids"],
                          "rejected_ids": rejected["ids"], "chosen_reward": chosen["reward"],
                          "rejected_reward": rejected["reward"]})
            if chosen["generated_at"] == rejected["generated_at"] == t:
                pairs[-1].update(chosen_logp=chosen.get("logp"), rejected_logp=rejected.get("logp"))
    if ctx.cfg.loss.type == "wdpo":
        w = pair_weights(torch.tensor([r["chosen_reward"] for r in rows]),
                         torch.tensor([r["rejected_reward"] for r in rows]), ctx.cfg.loss.beta2)
        for row, weight in zip(rows, w.tolist()):
            row["weight"] = weight
    write_jsonl(ctx.store.iter_dir(t) / "pairs.jsonl", rows)
    return pairs, ties


def reference(ctx: Context, t: int, pairs: list[dict], model) -> tuple[list, list]:
    """Reference log-probs, computed once per iteration before any update (so pi_t needs no second copy)."""
    path = ctx.store.iter_dir(t) / "ref_logps.json"
    if path.is_file():
        saved = read_json(path)
        if saved["prompt_ids"] == [p["prompt_id"] for p in pairs]:
            return saved["chosen"], saved["rejected"]
    sampled = sampler_reference(ctx, t, pairs)
    todo = [p for p, ref in zip(pairs, sampled) if ref is None]
    ref_model = model
    if ctx.cfg.loss.reference == "initial" and t > 0 and todo:
        ref_model = load_model(ctx.initial_model_path, ctx.cfg.policy.dtype, ctx.cfg.policy.device)
    tc = ctx.cfg.train
    with _bar(f"iter {t} reference", len(todo)) as bar, lora.adapter_disabled(ref_model):
        mine = reference_logps(ref_model, ctx.dist.split(todo), ctx.tokenizer.pad_token_id,
                               tc.batch_size * 2, tc.bf16, bar)
    del ref_model
    shares = ctx.dist.gather(mine)  # each process scored a contiguous share of the pairs
    chosen, rejected = [x for c, _ in shares for x in c], [x for _, r in shares for x in r]
    computed = iter(zip(chosen, rejected))
    refs = [ref if ref is not None else next(computed) for ref in sampled]
    chosen, rejected = [c for c, _ in refs], [r for _, r in refs]
    write_json(path, {"prompt_ids": [p["prompt_id"] for p in pairs], "chosen": chosen, "rejected": rejected,
                      "from_sampler": sum(ref is not None for ref in sampled)})
    return chosen, rejected


def sampler_reference(ctx: Context, t: int, pairs: list[dict]) -> list[tuple[float, float] | None]:
    """Per pair, the sampler's own (chosen, rejected) log-probs where they are this iteration's reference.

    They are log pi_t of responses sampled from pi_t at this iteration, so they are the reference when
    generation.sampler_logprobs is on and the reference is pi_t (loss.reference "previous", or iteration 0
    where pi_t = pi_0). Responses kept from earlier iterations were sampled from an older policy and get a
    forward pass under pi_t like every pair of the transformers backend.
    """
    usable = ctx.cfg.generation.sampler_logprobs and (ctx.cfg.loss.reference == "previous" or t == 0)
    out = []
    for p in pairs:
        c, r = p.get("chosen_logp"), p.get("rejected_logp")
        out.append((c, r) if usable and c is not None and r is not None else None)
    return out


def train(ctx: Context, t: int, pairs: list[dict]) -> dict:
    """pi_t -> pi_{t+1}; the checkpoint (with its metrics) is written as one atomic directory."""
    ckpt = ctx.store.checkpoint(t)
    if (ckpt / "train_metrics.json").is_file():
        ctx.model = load_model(str(ckpt), ctx.cfg.policy.dtype, ctx.cfg.policy.device)
        return read_json(ckpt / "train_metrics.json")
    release_generator(ctx)
    state_path = ctx.store.iter_dir(t) / "train_state.pt"
    with Timer(ctx.times, "training"):
        model = lora.attach(ctx.model, ctx.cfg.lora)  # pi_t itself without LoRA
        ref = reference(ctx, t, pairs, model)
        log_rows: list[dict] = []
        with _bar(f"iter {t} train", len(pairs) * ctx.cfg.train.epochs) as bar:
            metrics = train_iteration(model, pairs, ref, ctx.tokenizer.pad_token_id, ctx.cfg.train,
                                      ctx.cfg.loss, seed=ctx.cfg.seed + t, progress=bar, log=log_rows.append,
                                      dist=ctx.dist, state_path=state_path)
        state_dict = ctx.dist.full_state_dict()  # unsharded weights (FSDP/ZeRO-3); every process takes part

        def save(tmp):
            ctx.model = lora.save_merged(model, tmp, state_dict)
            ctx.tokenizer.save_pretrained(tmp)
            write_json(tmp / "train_metrics.json", metrics)
            write_jsonl(tmp / "train_log.jsonl", log_rows)

        atomic_save_dir(ckpt, save)  # main process only
        state_path.unlink(missing_ok=True)  # the checkpoint supersedes the mid-iteration state
        if ctx.dist.active:  # every process continues from the saved pi_{t+1}, whatever wrapped it
            ctx.dist.barrier()
            ctx.model = load_model(str(ckpt), ctx.cfg.policy.dtype, ctx.cfg.policy.device)
    return metrics


def evaluate_heldout(ctx: Context, t: int, name: str) -> float | None:
    """Mean reward of one greedy response per held-out prompt from the current policy."""
    if not (ctx.cfg.eval.heldout and ctx.heldout):
        return None
    it = ctx.store.iter_dir(t)

    def work(records: list[dict]) -> list[dict]:
        out = ctx.generator.generate(ctx.model, [r["ids"] for r in records], n=1,
                                     greedy=ctx.cfg.generation.eval_greedy, seed=ctx.cfg.seed,
                                     path=policy_path(ctx, t, trained=name != "heldout_start"))
        texts = [s[0].text for s in out]
        scores = checked_score(ctx.reward, records, texts)
        return [{"prompt_id": r["id"], "prompt": r["prompt"], "response": s[0].text, "eos": s[0].eos,
                 "reward": sc} for r, s, sc in zip(records, out, scores)]

    with Timer(ctx.times, "eval"), _bar(f"iter {t} held-out", len(ctx.heldout)) as bar:
        rows = batched(ctx.dist, ctx.store, it / name, ctx.heldout, ctx.cfg.generation.batch_size, work, bar)
    write_jsonl(it / f"{name}.jsonl", rows)
    return sum(r["reward"] for r in rows) / len(rows)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def iteration_metrics(ctx: Context, t: int, state: dict, pairs: list[dict], ties: int, n_picked: int,
                      train_metrics: dict) -> dict:
    chosen = [chosen_reward(state[p["id"]]) for p in ctx.prompts]
    rejected = [min(r["reward"] for r in state[p["id"]]["responses"]) for p in ctx.prompts]
    eos = [r["eos"] for p in ctx.prompts for r in state[p["id"]]["responses"]]
    metrics = {"iteration": t, **train_metrics, "objective/scores": _mean(chosen),
               "objective/scores_margin": _mean(c - r for c, r in zip(chosen, rejected)),
               "objective/scores_all": _mean(chosen + rejected), "val/contain_eos_token": _mean(eos),
               "pairs/trained": len(pairs), "pairs/dropped_ties": ties if ctx.cfg.loss.drop_ties else 0,
               "pairs/ties": ties, "selection/n_regenerated": n_picked,
               "selection/frac_regenerated": n_picked / len(ctx.prompts)}
    return metrics


def run_iteration(ctx: Context, t: int, state: dict[str, dict], offline=None) -> tuple[dict, dict]:
    """One iteration; `offline` (optune dpo) is a callable giving the fixed scored pairs instead of sampling."""
    ctx.times = read_json(ctx.store.iter_dir(t) / "times.json") if (ctx.store.iter_dir(t) / "times.json").is_file() \
        else {}
    with Timer(ctx.times, "bookkeeping"):
        picked = select(ctx, t, state) if offline is None else []
    fresh = generate_and_score(ctx, t, picked) if offline is None else offline(ctx, t)
    with Timer(ctx.times, "bookkeeping"):
        state = merge(ctx, t, state, fresh)
        pairs, ties = build_pairs(ctx, t, state, labelled=offline is not None)
        write_json(ctx.store.iter_dir(t) / "times.json", ctx.times)
    start = evaluate_heldout(ctx, t, "heldout_start") if t == 0 else None
    train_metrics = train(ctx, t, pairs)
    write_json(ctx.store.iter_dir(t) / "times.json", ctx.times)
    heldout = evaluate_heldout(ctx, t, "heldout")
    metrics = iteration_metrics(ctx, t, state, pairs, ties, len(picked), train_metrics)
    if heldout is not None:
        metrics["eval/heldout_reward"] = heldout
    if start is not None:
        metrics["eval/heldout_reward_start"] = start
    times = {k: ctx.times.get(k, 0.0) for k in ("generation", "rewarding", "training", "bookkeeping", "eval")}
    work = times["generation"] + times["rewarding"] + times["training"] + times["bookkeeping"]
    for key, value in times.items():
        metrics[f"time/{key}_s"] = value
        metrics[f"time/{key}_frac"] = value / work if key != "eval" and work else None
    metrics["time/iteration_s"] = work
    previous = read_json(ctx.store.iter_dir(t - 1) / "metrics.json")["time/elapsed_s"] if t else 0.0
    metrics["time/elapsed_s"] = previous + work
    metrics = {k: v for k, v in metrics.items() if v is not None}
    ctx.store.write_metrics(t, metrics)
    return state, metrics


def summary_line(m: dict) -> str:
    heldout = f" heldout {m['eval/heldout_reward']:.4f}" if "eval/heldout_reward" in m else ""
    # an iteration whose pairs were all ties trains nothing, so it has no loss
    loss = f" | loss {m['loss']:.4f} acc {m['rewards/accuracies']:.2f}" if "loss" in m else " | no training"
    return (f"iter {m['iteration']}: regenerated {m['selection/n_regenerated']} ({m['selection/frac_regenerated']:.0%})"
            f" | reward chosen {m['objective/scores']:.4f} | pairs {m['pairs/trained']} (ties dropped "
            f"{m['pairs/dropped_ties']}){loss}{heldout}"
            f" | gen {m['time/generation_s']:.0f}s reward {m['time/rewarding_s']:.1f}s train "
            f"{m['time/training_s']:.0f}s ({m['time/iteration_s']:.0f}s)")


def run(ctx: Context, log=print, offline=None) -> list[dict]:
    """Run (or resume) every unfinished iteration; returns all iterations' metrics."""
    state: dict[str, dict] = {}
    results = []
    for t in range(ctx.cfg.iterations):
        if ctx.store.finished(t):
            state = {r["prompt_id"]: r for r in read_jsonl(ctx.store.iter_dir(t) / "responses.jsonl")}
            results.append(read_json(ctx.store.iter_dir(t) / "metrics.json"))
            continue
        state, metrics = run_iteration(ctx, t, state, offline)
        results.append(metrics)
        if ctx.dist.is_main:
            log(summary_line(metrics))
        if ctx.tracker is not None:
            ctx.tracker.log(metrics, step=t)
        gc.collect()
    release_generator(ctx)
    return results
