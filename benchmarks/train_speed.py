"""Training speed per pair: the plain path (two padded sequences per pair) against the packed path (the
prompt once per pair, `train.packing`), at the embedded default's shapes, in one run.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/train_speed.py [--repeats 3] [--variants plain,packed]
        [--rss] [--out FILE]

Policy: the embedded SmolLM2-135M-Instruct (converted once into the optune cache). Pairs: the first 96
prompts of verifiable:train through the chat template; chosen and rejected responses of random token ids,
lengths drawn uniformly in [20, 64] with a fixed seed. One timed unit is one optimizer step as
`train_iteration` runs it (the default TrainConfig: 8 pairs x 2 micro-batches, RMSprop, clipping): forward,
backward and optimizer on 16 pairs (wall and this process's CPU seconds), then the reference pass (no
gradient, batch 16) on the same pairs.
Every repeat times every variant on the same 16 pairs, in a rotated order (with two variants: AB BA AB
...), so that load from other processes falls on all of them alike; the table gives medians, min and max
over repeats, and each variant's ratio to the plain fp32 path (the median of the per-repeat ratios).
Compare few variants per run: the fewer, the closer in time each variant's step is to the plain one's.
"+bf16" variants run under bf16 autocast (float32 weights). --rss also runs one step of each variant in a
fresh process and reports the step's peak resident memory (VmHWM reset after loading).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {"plain": (False, False), "packed": (True, False), "plain+bf16": (False, True),
            "packed+bf16": (True, True)}
PER_STEP = 16


def setup(n_prompts: int = 96, seed: int = 0):
    from optune.data.prompts import load_prompts
    from optune.generation import encode_prompt
    from optune.models.policy import load_model, load_tokenizer
    from optune.pairs import Pair
    from optune.runner.prepare import resolve_policy

    path = resolve_policy("embedded:smollm2-135m-instruct")
    tokenizer = load_tokenizer(path)
    rng = random.Random(seed)
    vocab = len(tokenizer)

    def response() -> list[int]:
        return [rng.randrange(vocab) for _ in range(rng.randint(20, 64))]

    prompts = [encode_prompt(tokenizer, r, 256) for r in load_prompts("verifiable:train", n_prompts)]
    pairs = [Pair.of(p, response(), response(), rng.random(), rng.random()) for p in prompts]
    return load_model(path), pairs, tokenizer.pad_token_id


def train_step(model, pairs, pad_id: int, packing: bool, bf16: bool, seed: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process) of one optimizer step on `pairs` through train_iteration."""
    from optune.config.run import LossConfig, TrainConfig
    from optune.losses import make_loss
    from optune.training import train_iteration
    from optune.training.reference import References
    from optune.training.update import TrainInputs

    cfg = TrainConfig(epochs=1, save_steps=0, bf16=bf16, packing=packing)
    lc = LossConfig()
    ref = ([-60.0] * len(pairs), [-60.0] * len(pairs))
    start, cpu = time.perf_counter(), time.process_time()
    metrics = train_iteration(model, TrainInputs(pairs, References.of(*ref), pad_id, seed), cfg,
                              make_loss(lc.type, lc.beta1, lc.beta2))
    assert metrics["train/steps"] == 1
    return time.perf_counter() - start, time.process_time() - cpu


def reference_pass(model, pairs, pad_id: int, packing: bool, bf16: bool) -> float:
    from optune.training import reference_logps

    start = time.perf_counter()
    reference_logps(model, pairs, pad_id, 2 * 8, bf16, packing=packing)
    return time.perf_counter() - start


def tokens(model, pairs, pad_id: int) -> dict:
    """Tokens through the decoder per micro-batch of 8 (rows x width), summed over the step's micro-batches."""
    from optune.training import collate
    from optune.training.packing import attention_cost, pack

    plain = packed = 0
    for i in range(0, len(pairs), 8):
        plain += collate(pairs[i:i + 8], pad_id)["input_ids"].numel()
        packed += pack(pairs[i:i + 8], pad_id, attention_cost(model)).input_ids.numel()
    real = sum(len(p.prompt_ids) + len(p.chosen.ids) + len(p.rejected.ids) for p in pairs)
    return {"plain": plain, "packed": packed, "real": real}


def timings(names: list[str], repeats: int) -> tuple[dict, dict]:
    model, pairs, pad_id = setup()
    for name in names:  # warm-up: first calls build kernels and allocator pools
        train_step(model, pairs[:4], pad_id, *VARIANTS[name], seed=0)
    results = {part: {n: [] for n in names} for part in ("step", "step_cpu", "reference")}
    toks = []
    for k in range(repeats):
        chunk = pairs[(k * PER_STEP) % len(pairs):][:PER_STEP]
        toks.append(tokens(model, chunk, pad_id))
        for name in names[k % len(names):] + names[:k % len(names)]:
            wall, cpu = train_step(model, chunk, pad_id, *VARIANTS[name], seed=k)
            results["step"][name].append(wall)
            results["step_cpu"][name].append(cpu)
            results["reference"][name].append(reference_pass(model, chunk, pad_id, *VARIANTS[name]))
            print(f"repeat {k} {name}: step {wall:.1f} s (cpu {cpu:.1f} s), reference "
                  f"{results['reference'][name][-1]:.1f} s, load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return results, {k: sum(t[k] for t in toks) for k in toks[0]}


def peak_rss(name: str) -> dict:
    """Peak resident memory (kB) of one training step of `name` in this (fresh) process."""
    model, pairs, pad_id = setup()
    rss = lambda key: int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1])
    before = rss("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    train_step(model, pairs[:PER_STEP], pad_id, *VARIANTS[name], seed=0)
    return {"variant": name, "rss_before_kb": before, "peak_kb": rss("VmHWM:")}


def table(results: dict, names: list[str]) -> list[str]:
    """Per variant and measure: seconds per pair, median [min, max] over repeats, and the median [min, max]
    of the per-repeat ratios plain / variant (a speed-up)."""
    heads = {"step": "step wall s/pair", "step_cpu": "step CPU s/pair", "reference": "reference wall s/pair"}
    lines = ["| variant | " + " | ".join(f"{h} | vs plain" for h in heads.values()) + " |",
             "|---|" + "---|---|" * len(heads)]
    for name in names:
        row = [name]
        for part in heads:
            xs = [x / PER_STEP for x in results[part][name]]
            ratios = [a / b for a, b in zip(results[part]["plain"], results[part][name])]
            row += [f"{statistics.median(xs):.3f} [{min(xs):.3f}, {max(xs):.3f}]",
                    f"{statistics.median(ratios):.2f}x [{min(ratios):.2f}, {max(ratios):.2f}]"]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="plain,packed",
                        help=f"comma-separated, plain first (the ratios' base); of {', '.join(VARIANTS)}")
    parser.add_argument("--rss", action="store_true", help="peak memory of one step per variant (fresh processes)")
    parser.add_argument("--out", type=Path, help="write the raw figures as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(peak_rss(args.child)))
        return
    import torch

    names = args.variants.split(",")
    if names[0] != "plain" or not set(names) <= set(VARIANTS):
        parser.error(f"--variants: plain first, then any of {', '.join(VARIANTS)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads "
          f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}), load average {os.getloadavg()[0]:.1f} at start")
    results, toks = timings(names, args.repeats)
    print(f"{args.repeats} repeats x {PER_STEP} pairs; decoder tokens per repeat (rows x width, summed over "
          f"micro-batches): plain {toks['plain'] // args.repeats}, packed {toks['packed'] // args.repeats}, "
          f"real (prompt + chosen + rejected) {toks['real'] // args.repeats}; "
          f"load average {os.getloadavg()[0]:.1f} at end")
    print("\n".join(table(results, names)))
    rss = []
    if args.rss:
        for name in names:
            out = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True,
                                 check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            rss.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print("| variant | RSS after loading (MB) | peak RSS during the step (MB) | step's growth (MB) |")
        print("|---|---|---|---|")
        for r in rss:
            print(f"| {r['variant']} | {r['rss_before_kb'] / 1024:.0f} | {r['peak_kb'] / 1024:.0f} | "
                  f"{(r['peak_kb'] - r['rss_before_kb']) / 1024:.0f} |")
    if args.out:
        from optune.store import write_json

        write_json(args.out, {"results": results, "tokens": toks, "rss": rss})


if __name__ == "__main__":
    main()
