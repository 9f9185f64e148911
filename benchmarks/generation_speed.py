"""Generation speed of the transformers backend's implementations (and optionally vllm), side by side.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/generation_speed.py [--prompts 32] [--tokens 64]
        [--rounds 3] [--natural] [--vllm] [--iteration]

Variants: "generate" (generation.impl=generate: model.generate, today's main), "decode" (optune's decode
loop, the default) and "decode_refs" (the decode loop with generation.sampler_logprobs=true, which keeps
training's matmul kernels). Every variant samples 2 responses per prompt (top_p 0.9, temperature 1) from
the same model (the embedded SmolLM2-135M-Instruct; --model for another) in calls of --batch sequences
(generation.batch_size), with responses forced to exactly --tokens tokens (--natural: stopped at EOS, as in
a run) so every variant produces the same number of tokens. The three share one in-memory model and run in
alternation, --rounds times, in the order generate, decode, decode_refs, then reversed: on a shared machine
each round's ratios compare measurements taken back to back, and their spread over the rounds is the
noise. Each pass is timed in wall-clock and in CPU seconds of this process (the work, whatever else runs).
At the end, the decode variants' log-probs of one call's sequences are compared with training's forward
pass. --vllm adds the vllm backend (engine start timed apart), --iteration one `optune run` iteration per
variant. Results go to stdout and --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# name -> (backend, impl, sampler_logprobs); "decode_refs" is the decode loop when its log-probs serve as
# DPO references (generation.sampler_logprobs=true), which keeps training's matmul kernels
VARIANTS = {"generate": ("transformers", "generate", False), "decode": ("transformers", "decode", False),
            "decode_refs": ("transformers", "decode", True), "vllm": ("vllm", "decode", False)}
ALTERNATED = ("generate", "decode", "decode_refs")


def prompt_ids(tokenizer, n: int) -> list[list[int]]:
    from optune.data.prompts import load_prompts
    from optune.generation import encode_prompt

    return [encode_prompt(tokenizer, r, 256) for r in load_prompts("verifiable:train", n)]


def generation_pass(generator, model, model_path: str, prompts: list[list[int]], batch: int) -> dict:
    """Wall seconds, process CPU seconds and tokens of one pass over the prompts, in calls of `batch`
    sequences (2 per prompt). CPU time counts this process's work whatever else shares the cores (with
    several threads it also counts their spin-waits)."""
    per_call = max(1, batch // 2)
    start, cpu, generated = time.perf_counter(), time.process_time(), 0
    for i in range(0, len(prompts), per_call):
        out = generator.generate(model, prompts[i:i + per_call], n=2, seed=i, path=model_path)
        generated += sum(len(s.ids) for samples in out for s in samples)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"generated_tokens": generated, "generation_s": round(wall, 2), "tokens_per_s": round(generated / wall, 2),
            "cpu_s": round(cpu, 2), "tokens_per_cpu_s": round(generated / cpu, 2)}


def make(variant: str, tokenizer, args):
    from optune.config.run import GenerationConfig, PolicyConfig
    from optune.generation import make_generator

    backend, impl, refs = VARIANTS[variant]
    cfg = GenerationConfig(backend=backend, impl=impl, max_new_tokens=args.tokens, sampler_logprobs=refs,
                           min_new_tokens=0 if args.natural else args.tokens, batch_size=args.batch)
    return make_generator(cfg, tokenizer, PolicyConfig())


def logp_agreement(model, tokenizer, prompts: list[list[int]], generator) -> dict:
    """Largest and mean |sampler log-prob - training's forward pass| per sequence, one call's sequences."""
    from optune.pairs import Pair
    from optune.training.logps import reference_logps

    out = generator.generate(model, prompts, n=2, seed=0)
    pairs = [Pair.of(p, a.ids, b.ids) for p, (a, b) in zip(prompts, out)]
    chosen, rejected = reference_logps(model, pairs, tokenizer.pad_token_id, 16, bf16=False)
    diffs = [abs(s.logp - ref) for samples, c, r in zip(out, chosen, rejected) for s, ref in zip(samples, (c, r))]
    return {"max_abs_nats": float(f"{max(diffs):.3g}"), "mean_abs_nats": float(f"{sum(diffs) / len(diffs):.3g}")}


def alternate(model_path: str, prompts: list[list[int]], args, record) -> dict:
    """The transformers variants in alternation on one in-memory model; one record per pass."""
    from optune.models.policy import load_model, load_tokenizer

    tokenizer, model = load_tokenizer(model_path), load_model(model_path)
    generators = {v: make(v, tokenizer, args) for v in ALTERNATED}
    for generator in generators.values():  # warm-up: first-call costs
        generation_pass(generator, model, model_path, prompts[:2], 4)
    for r in range(args.rounds):
        for variant in (ALTERNATED if r % 2 == 0 else ALTERNATED[::-1]):
            timed = generation_pass(generators[variant], model, model_path, prompts, args.batch)
            record({"variant": variant, "round": r, **timed, "load_1min": round(os.getloadavg()[0], 1)})
    per_call = prompts[:max(1, args.batch // 2)]
    return {v: logp_agreement(model, tokenizer, per_call, generators[v]) for v in ("decode", "decode_refs")}


def vllm_pass(model_path: str, prompts: list[list[int]], args) -> dict:
    from optune.models.policy import load_tokenizer

    generator = make("vllm", load_tokenizer(model_path), args)
    start = time.perf_counter()  # the engine starts on one prompt, so generation time excludes the start-up
    generator.generate(None, prompts[:1], n=1, seed=0, path=model_path)
    start_s = time.perf_counter() - start
    timed = generation_pass(generator, None, model_path, prompts, args.batch)
    generator.release()  # (the engine's own processes are not in this process's CPU time)
    return {"variant": "vllm", **timed, "engine_start_s": round(start_s, 1)}


def one_iteration(variant: str, model_path: str, args, out_dir: Path) -> dict:
    """Time split of one `optune run` iteration (held-out evaluation off) with this variant."""
    backend, impl, refs = VARIANTS[variant]
    run = out_dir / f"iteration-{variant}"
    cmd = [sys.executable, "-m", "optune", "run", f"output_dir={run}", f"policy.model={model_path}",
           "iterations=1", f"data.max_prompts={args.prompts}", "eval.heldout=false", f"generation.backend={backend}",
           f"generation.impl={impl}", f"generation.max_new_tokens={args.tokens}",
           f"generation.sampler_logprobs={str(refs).lower()}"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    m = json.loads((run / "iter_000" / "metrics.json").read_text())
    return {"variant": variant, **{k: round(m[f"time/{k}_s"], 1) for k in
                                   ("generation", "rewarding", "training", "bookkeeping", "iteration")}}


def summary(passes: list[dict]) -> dict:
    """Per round, each decode variant's rate over generate's of the same round (wall clock and CPU time)."""
    passes = [p for p in passes if "round" in p]
    out = {}
    for key in ("tokens_per_s", "tokens_per_cpu_s"):
        rate = {(p["variant"], p["round"]): p[key] for p in passes}
        for variant in ALTERNATED[1:]:
            ratios = [rate[variant, r] / rate["generate", r] for r in sorted({p["round"] for p in passes})
                      if (variant, r) in rate and ("generate", r) in rate]
            if ratios:
                out[f"{variant}/{key}"] = {
                    "speedup_per_round": [round(x, 2) for x in ratios],
                    "speedup_median": round(statistics.median(ratios), 2),
                    "speedup_min": round(min(ratios), 2), "speedup_max": round(max(ratios), 2),
                    **{f"{v}_median": round(statistics.median(p[key] for p in passes if p["variant"] == v), 2)
                       for v in ("generate", variant)}}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="sequences per generate call (generation.batch_size)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating generate/decode passes of each")
    parser.add_argument("--natural", action="store_true", help="stop at EOS instead of forcing --tokens tokens")
    parser.add_argument("--vllm", action="store_true", help="also time the vllm backend")
    parser.add_argument("--iteration", action="store_true", help="also time one optune iteration per variant")
    parser.add_argument("--out", default="benchmarks/out/generation_speed.json")
    args = parser.parse_args()
    import torch

    from optune.models.policy import EMBEDDED, load_tokenizer, resolve_model_path

    model_path = resolve_model_path(args.model or EMBEDDED)
    prompts = prompt_ids(load_tokenizer(model_path), args.prompts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"model": args.model or EMBEDDED, **{k: v for k, v in vars(args).items() if k not in ("model", "out")},
              "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "cpu": platform.processor(),
              "torch": torch.__version__, "passes": []}

    def record(row: dict) -> None:
        result["passes"].append(row)
        result["summary"] = summary(result["passes"])
        out.write_text(json.dumps(result, indent=1) + "\n")  # after each measurement: nothing lost
        print(json.dumps(row), flush=True)

    result["sampler_logp_vs_forward"] = alternate(model_path, prompts, args, record)
    if args.vllm:
        record(vllm_pass(model_path, prompts, args))
    if args.iteration:
        for variant in ALTERNATED + (("vllm",) if args.vllm else ()):
            record(one_iteration(variant, model_path, args, out.parent))
    print(json.dumps(result["summary"]), json.dumps(result["sampler_logp_vs_forward"]), flush=True)
    return 0


if __name__ == "__main__":  # vLLM's engine starts worker processes that re-import this module
    sys.exit(main())
