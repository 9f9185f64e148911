"""A cost model of one OPTune iteration, and the wall-time saving of rho = 0.5 against rho = 1 it predicts.

    python benchmarks/cost_model.py

One iteration t >= 1 at selection.rho = rho (docs/scaling.md, "Cost model of one iteration"):

    generation  waves * L * t_step + rho * 2N * L / G    waves = ceil(rho * 2N / (B * D))
    rewarding   rho * 2N / R
    training    P * 2 (Lp + L) / T                       P pairs trained (ties dropped), reference pass included
    update      U                                        giving the engine pi_{t+1}: restart or in-place load

N prompts, Lp prompt and L response tokens, two responses per prompt; D engines of B sequences per batch;
t_step the fixed cost of one decoding step of a batch (a GPU step reads every weight once: latency-bound
when the batch is small), G the tokens/s all engines add on top of that (throughput); R responses scored
per second; T training tokens per second over all processes. Iteration 0 regenerates everything (rho = 1)
and is shared by both runs, so a run of I iterations takes T(1) + (I - 1) T(rho).

Each setting's inputs are measured (the CPU rows, docs/benchmarks.md) or derived from the hardware and a
stated efficiency (the paper's scale: no 7-8B model has run here). `--json` prints the table as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, replace


@dataclass(frozen=True)
class Setting:
    name: str
    prompts: int
    """N: prompts per iteration."""
    prompt_tokens: float
    """Lp: mean prompt tokens (chat template included)."""
    response_tokens: float
    """L: mean response tokens."""
    pairs_fraction: float
    """P / N: the share of prompts whose pair is trained (1 - tie rate with loss.drop_ties)."""
    batch: int
    """B: sequences per generation batch of one engine (generation.batch_size)."""
    engines: int
    """D: engines generating at once (one per process)."""
    step_s: float
    """t_step: fixed seconds of one decoding step, whatever the batch (0: throughput-bound, as on a CPU)."""
    gen_tokens_s: float
    """G: generated tokens/s of all engines on top of the fixed step cost."""
    reward_per_s: float
    """R: responses scored per second."""
    train_tokens_s: float
    """T: training tokens/s of all processes, 2 (Lp + L) per pair, reference pass included."""
    update_s: float
    """U: seconds to give the engine the new policy each iteration (0 for the transformers backend)."""
    partial_pairs: float = 1.0
    """Pairs trained at rho < 1 over those at rho = 1 (kept high-reward responses tie less: measured 1.25)."""


def stage_seconds(s: Setting, rho: float) -> dict[str, float]:
    """Seconds of each stage of one iteration t >= 1 at `rho`."""
    sequences = math.ceil(rho * s.prompts) * 2
    waves = math.ceil(sequences / (s.batch * s.engines))
    return {
        "generation": waves * s.response_tokens * s.step_s + sequences * s.response_tokens / s.gen_tokens_s,
        "rewarding": sequences / s.reward_per_s,
        "training": s.prompts * s.pairs_fraction * (1.0 if rho == 1.0 else s.partial_pairs)
        * 2 * (s.prompt_tokens + s.response_tokens) / s.train_tokens_s,
        "update": s.update_s,
    }


def iteration_seconds(s: Setting, rho: float) -> float:
    return sum(stage_seconds(s, rho).values())


def speedup(s: Setting, rho: float = 0.5, iterations: int | None = None) -> float:
    """T(1) / T(rho) per iteration t >= 1, or over a run of `iterations` whose iteration 0 both share."""
    full, partial = iteration_seconds(s, 1.0), iteration_seconds(s, rho)
    if iterations is None:
        return full / partial
    return iterations * full / (full + (iterations - 1) * partial)


def generation_share(s: Setting) -> float:
    """g: the share of rho = 1's iteration that scales with rho (generation and rewarding)."""
    stages = stage_seconds(s, 1.0)
    return (stages["generation"] + stages["rewarding"]) / sum(stages.values())


# The embedded default run on this 2-core CPU (docs/benchmarks.md, "Speed"): decode loop 262.9 tokens/s
# (64 sequences of 64 forced tokens; responses mostly reach the 64-token cap), training 2.17 s per trained
# pair (reference pass included) at ~60-token prompts: 2 x (60 + 64) / 2.17 = 114 tokens/s; rewarding
# 0.02 s per iteration (the verifiable reward); rho = 1 trained 110 of 192 pairs in iterations 1-2.
CPU = Setting("ours: CPU, 135M, 96 prompts, 64 tokens", prompts=96, prompt_tokens=60, response_tokens=64,
              pairs_fraction=110 / 192, batch=64, engines=1, step_s=0.0, gen_tokens_s=262.9,
              reward_per_s=192 / 0.02, train_tokens_s=114.0, update_s=0.0)

# The same run on one H100 (docs/results.md, "Why rho buys little time on the GPU"): 192 sequences of 64
# tokens in one batch took 2.16-2.46 s at rho = 1 and 1.88-2.18 s at rho = 0.5; t_step and G are fitted to
# those two means (64 t_step + 192 * 64 / G = 2.31, 64 t_step + 96 * 64 / G = 2.03), training 2.2-2.4 s
# for ~54 pairs of 2 x 124 tokens: ~5,800 tokens/s.
H100_135M = Setting("ours: 1 H100, 135M, 96 prompts, 64 tokens", prompts=96, prompt_tokens=60,
                    response_tokens=64, pairs_fraction=54 / 96, batch=192, engines=1, step_s=0.0273,
                    gen_tokens_s=21_900.0, reward_per_s=192 / 0.02, train_tokens_s=5_800.0, update_s=0.0)

# The paper's scale, derived (not measured): an 8B Llama-3-shaped policy in bf16, 48k prompts of ~200 tokens,
# 512-token responses, 8 H100s (989 TFLOP/s dense bf16, 3.35 TB/s HBM each), one vLLM engine per GPU
# (tensor parallel 1) of 256 sequences. A decoding step reads the 16 GB of weights (t_step = 16e9 / (3.35e12
# x 0.7) = 6.8 ms) and each sequence's KV cache (131 kB per token, ~456 tokens on average: 60 MB, 26 us per
# sequence per step: 39k tokens/s per GPU on top). Training: 8 x 8e9 FLOPs per token (forward, backward,
# reference forward) at 40% of the bf16 peak: 6,180 tokens/s per GPU. Rewarding: an 8B reward model,
# 2 x 8e9 FLOPs per token over prompt + response (712 tokens) at 40%: 35 responses/s per GPU. Engine update:
# restart with graph capture ~90 s; in-place ~10 s (16 GB from the page cache). Every pair trained
# (real-valued rewards).
PAPER = Setting("paper: 8 H100, 8B, 48k prompts, 512 tokens, vLLM restart", prompts=48_000, prompt_tokens=200,
                response_tokens=512, pairs_fraction=1.0, batch=256, engines=8, step_s=0.0068,
                gen_tokens_s=8 * 39_000.0, reward_per_s=8 * 35.0, train_tokens_s=8 * 6_180.0, update_s=90.0)

SETTINGS = [
    CPU,
    replace(CPU, name="ours: CPU, pairs as measured (rho = 0.5 trained 25% more)", partial_pairs=138 / 110),
    replace(CPU, name="ours: CPU, vllm backend restarted (33 s a start)", gen_tokens_s=103.3, update_s=33.0),
    replace(CPU, name="ours: CPU, vllm backend updated in place", gen_tokens_s=103.3, update_s=0.02),
    H100_135M,
    PAPER,
    replace(PAPER, name="paper scale, vLLM updated in place", update_s=10.0),
    replace(PAPER, name="paper scale, generation at 1/5 of that rate (HF generate)", step_s=5 * 0.0068,
            gen_tokens_s=8 * 39_000.0 / 5),
]


def table(settings: list[Setting] = SETTINGS, iterations: int = 3) -> list[dict]:
    rows = []
    for s in settings:
        full, half = stage_seconds(s, 1.0), stage_seconds(s, 0.5)
        t1, t5 = sum(full.values()), sum(half.values())
        rows.append({"setting": s.name, "rho1": full, "rho0.5": half, "g": generation_share(s),
                     "speedup_per_iteration": t1 / t5,
                     "speedup_run": iterations * t1 / (t1 + (iterations - 1) * t5), "iterations": iterations})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3, help="iterations of a run (iteration 0 shared)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = table(iterations=args.iterations)
    if args.json:
        print(json.dumps({"rows": rows, "settings": [asdict(s) for s in SETTINGS]}, indent=1))
        return
    print(f"{'setting (seconds: rho = 1 / rho = 0.5)':60} | generation s  | rewarding s     | training s  | "
          f"update s | g    | per iteration | {args.iterations}-iteration run")
    for r in rows:
        f, h = r["rho1"], r["rho0.5"]
        print(f"{r['setting']:60} | {f['generation']:5.0f} / {h['generation']:<5.0f} | {f['rewarding']:6.1f} / "
              f"{h['rewarding']:<6.1f} | {f['training']:4.0f} / {h['training']:<4.0f} | {f['update']:8.2f} | "
              f"{r['g']:.2f} | {r['speedup_per_iteration']:13.2f}x | {r['speedup_run']:.2f}x")


if __name__ == "__main__":
    main()
