"""Steady-state generation and training throughput on a GPU, with model-FLOPs utilisation (run by gpu_check.sh).

    PYTHONPATH=src python benchmarks/gpu_steady.py [OUT_DIR] [--budget-s 400] [--models 135m 1.7b]
    PYTHONPATH=src python benchmarks/gpu_steady.py --cpu-smoke [OUT_DIR]   # the same path, tiny, on the CPU

What it measures, on the SmolLM2-135M architecture and the SmolLM2-1.7B one, built with random weights
(timing only; the model files do not travel to the GPU machine), weights in bf16, sdpa attention:
- the GPU's bf16 matmul rate: an 8192 x 8192 x 8192 matmul, best of several CUDA-synchronised runs (the
  "peak" every MFU here is against), and the rate of the model's own decoder linear shapes at the row
  counts of each measurement ("shape rate");
- generation: prompts of ~60 tokens (a shared 24-token prefix, as the chat template's system turn), 2
  samples each, 64 new tokens forced (min_new_tokens = max_new_tokens), top_p 0.9, temperature 1, through
  optune's TransformersGenerator with generation.impl "generate" (model.generate) and "decode" (optune's
  loop), one warm-up call, then timed calls; tokens/s = generated tokens / seconds per call;
- training: pairs of a ~60-token prompt and two 64-token responses; one optimizer step = train.grad_accum
  micro-batches through pair_logps (plain and packed), the wDPO loss, backward, gradient clipping and the
  train.optimizer step (RMSprop, as TrainConfig's defaults); weights bf16 (policy.dtype=bfloat16), then
  float32 weights with bf16 autocast (train.bf16=true); two warm-up steps, then timed steps.

Model FLOPs (profile_step.model_flops): 2 x weights of the decoder's linear layers per token, the output
projection on the tokens that need logits (the last prompt token, every decode step, response tokens in
training) and attention (4 x layers x heads x head_dim per attended key, causal, no padding). Generation
counts every prompt once (not once per sample) and every decode step; training counts the tokens the path
runs (plain: prompt + response twice per pair; packed: prompt once), x3 for forward + backward.
MFU = model FLOPs / seconds / peak. Training's "response tok/s" counts chosen + rejected response tokens
(as gpu_check.py does), "run tok/s" the tokens the path runs. Each part has its own time budget; rows are
printed (flushed) and OUT/gpu_steady.json rewritten as each measurement finishes, so a timeout keeps what was
done.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from gpu_check import SMOLLM2_135M, padded_tokenizer
from profile_step import linear_shapes, model_flops

# SmolLM2-1.7B-Instruct's architecture (its config.json)
SMOLLM2_1_7B = {**SMOLLM2_135M, "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 24,
                "num_attention_heads": 32, "num_key_value_heads": 32, "rope_theta": 130000.0}
_TINY = {"vocab_size": 512, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}

GPU_PLAN = {
    "models": {"135m": {"arch": SMOLLM2_135M, "gen_rows": [192, 1024, 4096], "micro_batches": [8, 32]},
               "1.7b": {"arch": SMOLLM2_1_7B, "gen_rows": [192, 1024], "micro_batches": [8, 32, 64]}},
    "prefix": 24, "prompt_range": (52, 68), "new_tokens": 64, "matmul": 8192,
    "budget_s": {"matmul": 20, "generation": 70, "training": 110}, "cap_s": 15,
}
SMOKE_PLAN = {
    "models": {"135m": {"arch": {**SMOLLM2_135M, **_TINY, "num_attention_heads": 4, "num_key_value_heads": 2},
                        "gen_rows": [4, 8], "micro_batches": [2]},
               "1.7b": {"arch": {**SMOLLM2_1_7B, **_TINY, "num_attention_heads": 4, "num_key_value_heads": 4},
                        "gen_rows": [4], "micro_batches": [2, 4]}},
    "prefix": 4, "prompt_range": (10, 14), "new_tokens": 8, "matmul": 128,
    "budget_s": {"matmul": 10, "generation": 20, "training": 20}, "cap_s": 2,
}
IMPLS = ("generate", "decode")
PATHS = (("plain", False), ("packed", True))


class Clock:
    """The whole run's deadline and the current part's."""

    def __init__(self, total_s: float):
        self.end = time.perf_counter() + total_s
        self.part_end = self.end

    def part(self, seconds: float) -> None:
        self.part_end = min(self.end, time.perf_counter() + seconds)

    def left(self) -> float:
        return self.part_end - time.perf_counter()


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def repeat_timed(fn, warmup: int, repeats: int, cap_s: float) -> list[float]:
    """Seconds of `repeats` calls after `warmup` untimed ones; fewer (at least one) once cap_s is spent."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < repeats and (not times or time.perf_counter() - start < cap_s):
        times.append(timed(fn))
    return times


def matmul_rate(m: int, k: int, n: int, device, dtype, reps: int = 10, trials: int = 5) -> float:
    """FLOP/s of F.linear(x [m, k], w [n, k]): the best of `trials` runs of `reps` back-to-back calls."""
    x = torch.randn(m, k, device=device, dtype=dtype)
    w = torch.randn(n, k, device=device, dtype=dtype)
    times = repeat_timed(lambda: [F.linear(x, w) for _ in range(reps)], 2, trials, float("inf"))
    return 2 * m * k * n * reps / min(times)


def peak_rate(n: int, device, dtype) -> float:
    """FLOP/s of an n x n x n matmul: the better of x @ w and F.linear(x, w) (x @ w.T, as nn.Linear runs)."""
    x = torch.randn(n, n, device=device, dtype=dtype)
    w = torch.randn(n, n, device=device, dtype=dtype)
    best = min(min(repeat_timed(lambda: [fn(x, w) for _ in range(10)],  # noqa: B023 (called within the iteration)
                                2, 5, float("inf")))
               for fn in (torch.matmul, F.linear))
    return 2 * n**3 * 10 / best


def shape_rate(model, rows: int, dtype: torch.dtype, cache: dict) -> float:
    """FLOP/s of the decoder's linear layers at `rows` input rows in `dtype`, FLOP-weighted (profile_step.ceiling
    on the model's device); memoised in `cache`."""
    if (rows, dtype) not in cache:
        device = next(model.parameters()).device
        flops = seconds = 0.0
        for name, (d_in, d_out, count) in linear_shapes(model).items():
            if name != "lm_head":
                work = 2 * rows * d_in * d_out * count
                flops += work
                seconds += work / matmul_rate(rows, d_in, d_out, device, dtype, reps=5, trials=3)
        cache[rows, dtype] = flops / seconds
    return cache[rows, dtype]


def build_model(arch: dict, device: str, dtype: torch.dtype):
    """LlamaForCausalLM with random weights, initialised on `device`, in `dtype`, sdpa attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(LlamaConfig(**arch, attn_implementation="sdpa"))
    model.to(dtype)
    model.generation_config.eos_token_id = arch["eos_token_id"]
    model.generation_config.pad_token_id = arch["pad_token_id"]
    return model


def make_prompts(count: int, vocab: int, prefix: int, lengths: tuple[int, int]) -> list[list[int]]:
    """Random token ids (not 0-2: pad, bos, eos), a common prefix of `prefix` tokens, lengths in `lengths`."""
    rng = random.Random(0)
    shared = [rng.randrange(3, vocab) for _ in range(prefix)]
    return [shared + [rng.randrange(3, vocab) for _ in range(rng.randint(*lengths) - prefix)] for _ in range(count)]


def make_pairs(prompts: list[list[int]], vocab: int, response: int) -> list:
    from optune.pairs import Pair

    rng = random.Random(1)
    return [Pair.of(p, [rng.randrange(3, vocab) for _ in range(response)],
                    [rng.randrange(3, vocab) for _ in range(response)]) for p in prompts]


def tri(n: int) -> int:
    """Keys attended by n causal tokens."""
    return n * (n + 1) // 2


def generation_flops(model, lengths: list[int], n: int, new_tokens: int) -> float:
    """Model FLOPs of a call: each prompt once, then new_tokens - 1 decode forwards of each of its n rows."""
    prompt_tokens = sum(lengths)
    prefill = model_flops(model, prompt_tokens, sum(tri(p) for p in lengths) / prompt_tokens, len(lengths))
    steps = n * len(lengths) * (new_tokens - 1)
    attended = n * sum(p + t for p in lengths for t in range(1, new_tokens))
    return prefill + model_flops(model, steps, attended / steps, steps)


def training_flops(model, pairs: list, packed: bool) -> tuple[float, int]:
    """(3 x forward model FLOPs, tokens run) of a micro-batch on the plain or packed path, padding not counted."""
    tokens = attended = head = 0
    for pair in pairs:
        p, c, r = len(pair.prompt_ids), len(pair.chosen.ids), len(pair.rejected.ids)
        head += c + r
        if packed:
            tokens += p + c + r
            attended += tri(p) + c * p + tri(c) + r * p + tri(r)
        else:
            tokens += 2 * p + c + r
            attended += tri(p + c) + tri(p + r)
    return 3 * model_flops(model, tokens, attended / tokens, head), tokens


def measure_generation(model, tokenizer, prompts: list[list[int]], impl: str, rows: int, new_tokens: int,
                       cap_s: float) -> dict:
    """One warm-up call of `rows` sequences (rows / 2 prompts x 2 samples), then up to 3 timed calls."""
    from optune.config.run import GenerationConfig
    from optune.generation import TransformersGenerator

    cfg = GenerationConfig(impl=impl, max_new_tokens=new_tokens, min_new_tokens=new_tokens, top_p=0.9,
                           temperature=1.0)
    generator, batch = TransformersGenerator(cfg, tokenizer), prompts[: rows // 2]
    first = generator.generate(model, batch, n=2, seed=0)
    generated = sum(len(s.ids) for samples in first for s in samples)
    times = repeat_timed(lambda: generator.generate(model, batch, n=2, seed=0), 0, 3, cap_s)
    seconds = statistics.median(times)
    flops = generation_flops(model, [len(p) for p in batch], 2, new_tokens)
    return {"impl": impl, "sequences": len(batch) * 2, "generated_tokens": generated, "times_s": times,
            "seconds": seconds, "tokens_per_s": generated / seconds, "model_flops": flops}


def train_step(model, optimizer, scheduler, micro: list[list], pad_id: int, autocast: bool, packing: bool,
               loss, max_grad_norm: float | None) -> None:
    """One optimizer step as training.policy.train_iteration takes it (references: constants)."""
    from optune.training.logps import pair_logps

    n_pairs = sum(len(mb) for mb in micro)
    for mb in micro:
        pol_c, pol_r = pair_logps(model, mb, pad_id, autocast, packing)
        ones = torch.ones_like(pol_c)
        out = loss(pol_c, pol_r, pol_c.detach() - 0.1, pol_r.detach(), ones, 0 * ones)
        (out.losses.sum() / n_pairs).backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def measure_training(model, pairs: list, pad_id: int, size: int, packing: bool, autocast: bool,
                     cap_s: float) -> dict:
    """Optimizer steps of grad_accum micro-batches of `size` pairs: 2 warm-up steps, then up to 4 timed."""
    from optune.config.run import TrainConfig
    from optune.losses import make_loss
    from optune.training import packing as packed
    from optune.training.schedule import make_optimizer

    cfg = TrainConfig()
    micro = [pairs[i * size:(i + 1) * size] for i in range(cfg.grad_accum)]
    optimizer, scheduler = make_optimizer(model, cfg, 10_000)
    loss = make_loss("wdpo", 0.1, 10.0)
    took_packed = packing and packed.supports(model, micro[0])
    model.train()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    times = repeat_timed(lambda: train_step(model, optimizer, scheduler, micro, pad_id, autocast, packing, loss,
                                            cfg.max_grad_norm), 2, 4, cap_s)
    flops, tokens = map(sum, zip(*(training_flops(model, mb, took_packed) for mb in micro)))
    n_pairs = size * cfg.grad_accum
    seconds = statistics.median(times)
    response = sum(len(p.chosen.ids) + len(p.rejected.ids) for mb in micro for p in mb)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {"pairs_per_micro_batch": size, "micro_batches": cfg.grad_accum, "packed": took_packed,
            "optimizer": cfg.optimizer, "times_s": times, "seconds": seconds, "pairs_per_s": n_pairs / seconds,
            "response_tokens_per_s": response / seconds, "run_tokens_per_s": tokens / seconds,
            "rows_per_micro_batch": tokens // cfg.grad_accum, "model_flops": flops, "peak_gib": peak}


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def pct(flops_per_s: float, rate: float) -> str:
    return f"{100 * flops_per_s / rate:.1f}%"


def attempt(measure, info: dict, record):
    """measure(), or None with the error recorded and printed: on a one-shot device run, one failing
    measurement (out of memory, a path that breaks on the GPU) must not cost the ones after it."""
    try:
        return measure()
    except Exception as exc:  # any failure: recorded, and the run goes on
        traceback.print_exc()
        record({**info, "error": f"{type(exc).__name__}: {exc}"[:500]})
        print(f"| {' | '.join(map(str, info.values()))} | failed: {type(exc).__name__} |", flush=True)
    return None


def skipped(info: dict, record) -> None:
    record({**info, "skipped": "part budget spent"})
    print(f"| {' | '.join(map(str, info.values()))} | skipped: part budget spent |", flush=True)


def generation_part(model, tokenizer, plan: dict, rows_list: list[int], clock: Clock, peak: float,
                    record) -> None:
    """Every (rows, impl) while the part's budget lasts; a row printed and recorded as each finishes."""
    vocab = model.config.vocab_size
    prompts = make_prompts(max(rows_list) // 2, vocab, plan["prefix"], plan["prompt_range"])
    ceilings: dict = {}
    print("\n| generation impl | sequences | s/call | tokens/s | TFLOP/s | MFU | % of shape rate |\n"
          "|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for rows in rows_list:
        for impl in IMPLS:
            info = {"impl": impl, "sequences": rows}
            if clock.left() <= 0:
                skipped(info, record)
                continue
            g = attempt(lambda: measure_generation(model, tokenizer, prompts,
                                                   impl, rows,  # noqa: B023 (called within the iteration)
                                                   plan["new_tokens"], min(plan["cap_s"], clock.left())), info, record)
            free_memory()
            if g is None:
                continue
            rate = g["model_flops"] / g["seconds"]
            g.update(shape_rate=shape_rate(model, rows, model.dtype, ceilings), mfu=rate / peak)
            record(g)
            print(f"| {impl} | {rows} | {g['seconds']:.3f} | {g['tokens_per_s']:,.0f} | {rate / 1e12:.3g} | "
                  f"{pct(rate, peak)} | {pct(rate, g['shape_rate'])} |", flush=True)


def training_part(model, pad_id: int, plan: dict, sizes: list[int], modes: list, clock: Clock, peak: float,
                  record) -> None:
    """Every (weights mode, micro-batch size, path) while the part's budget lasts, printed as each finishes."""
    vocab = model.config.vocab_size
    prompts = make_prompts(2 * max(sizes), vocab, plan["prefix"], plan["prompt_range"])
    pairs = make_pairs(prompts, vocab, plan["new_tokens"])
    ceilings: dict = {}
    print("\n| weights | path | pairs/micro-batch | s/step | pairs/s | response tok/s | run tok/s | TFLOP/s | "
          "MFU | % of shape rate | peak GiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for mode, dtype, autocast in modes:
        model.to(dtype)
        for size in sizes:
            for path, packing in PATHS:
                info = {"weights": mode, "path": path, "pairs_per_micro_batch": size}
                if clock.left() <= 0:
                    skipped(info, record)
                    continue
                t = attempt(lambda: measure_training(model, pairs, pad_id,
                                                     size, packing, autocast,  # noqa: B023 (called within the iteration)
                                                     min(plan["cap_s"], clock.left())), info, record)
                model.zero_grad(set_to_none=True)
                free_memory()
                if t is None:
                    continue
                rate = t["model_flops"] / t["seconds"]
                compute = torch.bfloat16 if autocast else dtype
                t.update(info, mfu=rate / peak,
                         shape_rate=shape_rate(model, t["rows_per_micro_batch"], compute, ceilings))
                record(t)
                peak_gib = f"{t['peak_gib']:.1f}" if t["peak_gib"] is not None else ""
                print(f"| {mode} | {path}{'' if packing == t['packed'] else ' (fell back to plain)'} | {size} | "
                      f"{t['seconds']:.3f} | {t['pairs_per_s']:,.1f} | {t['response_tokens_per_s']:,.0f} | "
                      f"{t['run_tokens_per_s']:,.0f} | {rate / 1e12:.3g} | {pct(rate, peak)} | "
                      f"{pct(rate, t['shape_rate'])} | {peak_gib} |", flush=True)

def model_part(name: str, spec: dict, plan: dict, device: str, dtype: torch.dtype, clock: Clock, peak: float,
               entry: dict, save) -> None:
    """Generation, then training (weights in `dtype`, then float32 with bf16 autocast) of one architecture."""
    arch = spec["arch"]
    model = build_model(arch, device, dtype)
    tokenizer = padded_tokenizer(arch["vocab_size"])
    params = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    entry.update(arch=arch, params=params, non_embedding_params=params - embedding, generation=[], training=[])
    save()
    print(f"\n## {name}: {params / 1e6:,.1f}M parameters ({(params - embedding) / 1e6:,.1f}M non-embedding), "
          f"attention {model.config._attn_implementation}, weights {str(dtype)[6:]}", flush=True)
    clock.part(plan["budget_s"]["generation"])
    generation_part(model, tokenizer, plan, spec["gen_rows"], clock, peak,
                    lambda row: (entry["generation"].append(row), save()))
    clock.part(plan["budget_s"]["training"])
    label = "bf16" if dtype == torch.bfloat16 else str(dtype)[6:]
    modes = [(label, dtype, False), ("fp32+autocast", torch.float32, True)]
    training_part(model, tokenizer.pad_token_id, plan, spec["micro_batches"], modes, clock, peak,
                  lambda row: (entry["training"].append(row), save()))
    del model
    free_memory()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="gpu_check_out", help="folder for gpu_steady.json")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny 2-layer models on the CPU, float32")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], help="weights (default: bfloat16; "
                        "float32 with --cpu-smoke)")
    parser.add_argument("--budget-s", type=float, help="whole run's time budget (default 400; smoke 120)")
    parser.add_argument("--models", nargs="+", choices=list(GPU_PLAN["models"]), default=list(GPU_PLAN["models"]))
    args = parser.parse_args(argv)
    import transformers

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        print("gpu_steady: no CUDA device; use --cpu-smoke for a CPU smoke test", file=sys.stderr)
        return 2
    plan, device = (SMOKE_PLAN, "cpu") if args.cpu_smoke else (GPU_PLAN, "cuda")
    dtype = getattr(torch, args.dtype or ("float32" if args.cpu_smoke else "bfloat16"))
    clock = Clock(args.budget_s or (120 if args.cpu_smoke else 400))
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    result = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
              "torch": torch.__version__, "transformers": transformers.__version__, "cpu_smoke": args.cpu_smoke,
              "dtype": str(dtype)[6:], "plan": {k: v for k, v in plan.items() if k != "models"}, "models": {}}

    def save():
        (out / "gpu_steady.json").write_text(json.dumps(result, indent=1) + "\n")

    clock.part(plan["budget_s"]["matmul"])
    n = plan["matmul"]
    result["peak_flops"] = peak = peak_rate(n, device, dtype)
    save()
    print(f"{result['device']}: {str(dtype)[6:]} matmul {n}x{n}x{n}: {peak / 1e12:.1f} TFLOP/s (the peak for MFU)",
          flush=True)
    for name in args.models:
        entry = result["models"][name] = {}
        model_part(name, plan["models"][name], plan, device, dtype, clock, peak, entry, save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
