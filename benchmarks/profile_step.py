"""Where the time of one generation call and one training step of the embedded default run goes.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/profile_step.py [--impl generate decode] [--train plain packed]
        [--prompts 32] [--tokens 64] [--out benchmarks/out/profile_step.json]

Shapes of the default run: SmolLM2-135M-Instruct (float32), generation.batch_size 64 (32 prompts x 2
samples), 64 new tokens (forced, so every call makes the same tokens), top_p 0.9, temperature 1; one
optimizer step of train.batch_size 8 x grad_accum 2 pairs of those prompts and responses (wDPO, RMSprop).

The split comes from forward hooks that time every attention block, its q/k/v/o projections, every MLP and
the output projection, separately for the prefill (prompt) and the decode (one token) forwards; the rest of
a call is outside the model (sampling, log-probs, the loop). The sampling step alone is then timed on the
call's own logits. The machine's ceiling is measured in the same run: fp32 and bf16 GFLOP/s of the
model's own matmul shapes at the batch's row counts; each phase is printed as model FLOPs / time against it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

# Phases are timed in CPU seconds of this process: on a shared machine, wall time also counts the waits for
# a core, which move with the other load; CPU time counts the work (with several threads, their spin-waits too).
CLOCK = time.process_time


def best_of(fn, repeat: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = CLOCK()
        fn()
        times.append(CLOCK() - start)
    return min(times)


def linear_shapes(model) -> dict[str, tuple[int, int, int]]:
    """name -> (in, out, count) of the decoder's linear layers, and the output projection."""
    shapes: dict[str, list] = {}
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            key = name.split(".")[-1]
            shapes.setdefault(key, [module.in_features, module.out_features, 0])[2] += 1
    return {k: tuple(v) for k, v in shapes.items()}


def ceiling(model, rows: int, dtype: torch.dtype, head: bool = True) -> float:
    """GFLOP/s of F.linear over the model's weight shapes with `rows` input rows, FLOP-weighted."""
    flops = seconds = 0.0
    for name, (d_in, d_out, count) in linear_shapes(model).items():
        if name == "lm_head" and not head:
            continue
        x, w = torch.randn(rows, d_in, dtype=dtype), torch.randn(d_out, d_in, dtype=dtype)
        t = best_of(lambda: F.linear(x, w))  # noqa: B023 (called within the iteration)
        flops += 2 * rows * d_in * d_out * count
        seconds += t * count
    return flops / seconds / 1e9


class Timers:
    """Forward hooks adding wall time per (phase, part); phase "prefill" or "decode" from the input length."""

    PARTS = {"self_attn": "attention", "q_proj": "attn_proj", "k_proj": "attn_proj", "v_proj": "attn_proj",
             "o_proj": "attn_proj", "mlp": "mlp", "lm_head": "lm_head"}

    def __init__(self, model):
        self.total: dict[tuple[str, str], float] = defaultdict(float)
        self.phase, self.handles, self.starts = "decode", [], {}
        self.handles.append(model.register_forward_pre_hook(self._top_start, with_kwargs=True))
        self.handles.append(model.register_forward_hook(self._end("model")))
        for name, module in model.named_modules():
            part = self.PARTS.get(name.split(".")[-1])
            if part is not None:
                self.handles.append(module.register_forward_pre_hook(self._start))
                self.handles.append(module.register_forward_hook(self._end(part)))

    def _top_start(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.phase = "prefill" if ids is not None and ids.shape[1] > 1 else "decode"
        self.starts[id(module)] = CLOCK()

    def _start(self, module, args):
        self.starts[id(module)] = CLOCK()

    def _end(self, part):
        def hook(module, args, output):
            self.total[self.phase, part] += CLOCK() - self.starts.pop(id(module))
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def model_flops(model, tokens: int, context: float, lm_head_tokens: int) -> float:
    """Forward FLOPs: 2 x weights x tokens for the decoder's matmuls, the head on lm_head_tokens, attention."""
    cfg = model.config
    shapes = linear_shapes(model)
    decoder = sum(2 * i * o * c for k, (i, o, c) in shapes.items() if k != "lm_head")
    head = 2 * shapes["lm_head"][0] * shapes["lm_head"][1]
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attention = 4 * cfg.num_hidden_layers * cfg.num_attention_heads * head_dim * context
    return decoder * tokens + head * lm_head_tokens + attention * tokens


def profile_generation(model, tokenizer, prompts, impl: str, tokens: int) -> tuple[dict, list]:
    from optune.config.run import GenerationConfig
    from optune.generation import TransformersGenerator

    gen = TransformersGenerator(GenerationConfig(impl=impl, max_new_tokens=tokens, min_new_tokens=tokens), tokenizer)
    gen.generate(model, prompts[:1], n=1, seed=0)  # first-call costs (allocator, kernels) out of the timing
    timers = Timers(model)
    start, cpu = time.perf_counter(), CLOCK()
    out = gen.generate(model, prompts, n=2, seed=0)
    wall, cpu = time.perf_counter() - start, CLOCK() - cpu
    timers.remove()
    split = {f"{phase}/{part}": round(s, 3) for (phase, part), s in sorted(timers.total.items())}
    return {"impl": impl, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "split_cpu_s": split}, out


def sampling_costs(model, prompts, tokenizer) -> dict:
    """One decode step's sampling alone, on real next-token logits [64, V]: model.generate's top-p warper,
    softmax and multinomial against optune's sampler, with and without the top-k prefilter."""
    from transformers.generation.logits_process import TopPLogitsWarper

    from optune.generation.base import left_pad
    from optune.generation.sampling import choose, sample_top_p, token_logprobs

    ids, mask = left_pad([p for p in prompts for _ in range(2)], tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1].float()
    warper, u = TopPLogitsWarper(0.9), torch.rand(len(logits))
    chosen = logits.argmax(-1)
    hf = best_of(lambda: torch.multinomial(warper(ids, logits.clone()).softmax(-1), 1))
    full = best_of(lambda: sample_top_p(logits.softmax(-1), 0.9, u, prefilter=()))
    fast = best_of(lambda: sample_top_p(logits.softmax(-1), 0.9, u))
    step = best_of(lambda: choose(logits, [], False, 1.0, 0.9, u))
    logp = best_of(lambda: token_logprobs(logits, chosen))
    nucleus = (TopPLogitsWarper(0.9)(ids, logits.clone()) > float("-inf")).sum(-1).float()
    return {"rows": len(logits), "hf_top_p_softmax_multinomial_ms": round(1e3 * hf, 2),
            "optune_softmax_full_sort_ms": round(1e3 * full, 2), "optune_softmax_prefilter_ms": round(1e3 * fast, 2),
            "optune_choose_incl_raw_logp_ms": round(1e3 * step, 2), "logsumexp_logp_ms": round(1e3 * logp, 2),
            "nucleus_tokens_median": float(nucleus.median()), "nucleus_tokens_max": float(nucleus.max())}


def profile_training(model, pairs, pad_id: int, packing: bool) -> dict:
    """One optimizer step of 2 micro-batches of 8 pairs (the second of two steps: optimizer state exists);
    packing: train.packing (each pair's prompt computed once, training.packing)."""
    from optune.config.run import TrainConfig
    from optune.losses import make_loss
    from optune.training.logps import pair_logps
    from optune.training.schedule import make_optimizer

    cfg = TrainConfig()
    optimizer, scheduler = make_optimizer(model, cfg, 2)
    loss = make_loss("wdpo", 0.1, 10.0)
    model.train()
    step = pairs[:cfg.batch_size * cfg.grad_accum]
    times: dict[str, float] = defaultdict(float)
    timers = None
    for repeat in range(2):
        times.clear()
        if repeat == 1:
            timers = Timers(model)
            timers.phase = "train"
        for i in range(0, len(step), cfg.batch_size):
            mb = step[i:i + cfg.batch_size]
            t0 = CLOCK()
            pol_c, pol_r = pair_logps(model, mb, pad_id, False, packing)
            t1 = CLOCK()
            ref_c, ref_r, rewards = pol_c.detach() - 0.1, pol_r.detach(), torch.ones(len(mb))
            out = loss(pol_c, pol_r, ref_c, ref_r, rewards, 0 * rewards)
            (out.losses.sum() / len(step)).backward()
            t2 = CLOCK()
            times["forward (response_logps)"] += t1 - t0
            times["loss + backward"] += t2 - t1
        t3 = CLOCK()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        t4 = CLOCK()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        times["clip_grad_norm"] = t4 - t3
        times["optimizer step + zero_grad"] = CLOCK() - t4
    timers.remove()
    split = {f"forward/{part}": round(s, 3) for (_, part), s in sorted(timers.total.items())}
    return {"pairs": len(step), "packing": packing, "seconds": {k: round(v, 3) for k, v in times.items()},
            "forward_split_s": split}


def training_rows(train: dict, fwd: float, ceil: float) -> list:
    """Table rows of one profiled training step (fwd: model FLOPs of its forward pass)."""
    t = train["seconds"]
    total = sum(t.values())
    table = [(k, v, v / total, fwd if k.startswith("forward") else 2 * fwd if k.startswith("loss") else None, ceil)
             for k, v in t.items()]
    table += [(f"  {k}", v, v / total, None, None) for k, v in train["forward_split_s"].items()]
    table.append(("whole step", total, 1.0, 3 * fwd, ceil))
    return table


def report_generation(model, g: dict, lengths: list[int], rows: int, tokens: int, ceil: dict) -> list:
    """Table rows (phase, seconds, share, GFLOP, GFLOP/s, % of the fp32 ceiling at that row count).

    FLOPs are the model's for the work itself, whatever an implementation computes on top: every prompt
    token once (no padding, no repeat per sample), every generated token once."""
    s = g["split_cpu_s"]
    mean = sum(lengths) / len(lengths)
    prefill = model_flops(model, sum(lengths), mean / 2, len(lengths))
    decode = model_flops(model, rows * (tokens - 1), mean + tokens / 2, rows * (tokens - 1))
    pre_s, dec_s = s.get("prefill/model", 0.0), s.get("decode/model", 0.0)
    out = [("prefill forward", pre_s, prefill, ceil["prefill"]), ("decode forwards", dec_s, decode, ceil["decode"])]
    for part in ("attn_proj", "mlp", "lm_head"):
        out.append((f"  decode {part}", s.get(f"decode/{part}", 0.0), None, None))
    core = s.get("decode/attention", 0.0) - s.get("decode/attn_proj", 0.0)
    other = dec_s - s.get("decode/attention", 0.0) - s.get("decode/mlp", 0.0) - s.get("decode/lm_head", 0.0)
    out += [("  decode attention core (RoPE, KV cache, attention)", core, None, None),
            ("  decode rest (embedding, norms, masks)", other, None, None),
            ("outside the model (sampling, log-probs, loop)", g["cpu_s"] - pre_s - dec_s, None, None),
            ("whole call (against the decode-shape ceiling)", g["cpu_s"], prefill + decode, ceil["decode"])]
    return [(name, sec, sec / g["cpu_s"], flops, ceiling_) for name, sec, flops, ceiling_ in out]


def print_table(title: str, rows: list) -> None:
    print(f"\n{title}\n| phase | CPU s | share | model GFLOP | GFLOP/s | % of fp32 ceiling |\n"
          "|---|---:|---:|---:|---:|---:|")
    for name, sec, share, flops, ceil in rows:
        rate = flops / sec / 1e9 if flops and sec else None
        cells = [f"{sec:.2f}", f"{100 * share:.0f}%", f"{flops / 1e9:.0f}" if flops else "",
                 f"{rate:.1f}" if rate else "", f"{100 * rate / ceil:.0f}%" if rate and ceil else ""]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", nargs="+", default=["generate", "decode"], choices=["generate", "decode"])
    parser.add_argument("--train", nargs="+", default=["plain", "packed"], choices=["plain", "packed"],
                        help="training paths to profile (train.packing false / true)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/out/profile_step.json")
    args = parser.parse_args()
    from optune.data.prompts import load_prompts
    from optune.generation import encode_prompt
    from optune.models.policy import load_model, load_tokenizer
    from optune.pairs import Pair
    from optune.runner.prepare import resolve_policy

    path = resolve_policy("embedded:smollm2-135m-instruct")
    tokenizer, model = load_tokenizer(path), load_model(path)
    prompts = [encode_prompt(tokenizer, r, 256) for r in load_prompts("verifiable:train", args.prompts)]
    rows, width = 2 * len(prompts), max(len(p) for p in prompts)
    result = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "rows": rows, "prompt_width": width, "tokens": args.tokens,
              "load_1min_start": os.getloadavg()[0], "ceiling_gflops": {}, "generation": []}
    lengths = [len(p) for p in prompts]
    row_counts = {"decode": (rows, True), "prefill": (sum(lengths), False), "train": (16 * (width + args.tokens), True)}
    for key, (m, head) in row_counts.items():
        for dtype in (torch.float32, torch.bfloat16):
            result["ceiling_gflops"][f"{key}/{str(dtype)[6:]}"] = round(ceiling(model, m, dtype, head), 1)
    print(json.dumps(result["ceiling_gflops"]), flush=True)
    out = None
    for impl in args.impl:
        g, out = profile_generation(model, tokenizer, prompts, impl, args.tokens)
        result["generation"].append(g)
        ceil = {"decode": result["ceiling_gflops"]["decode/float32"],
                "prefill": result["ceiling_gflops"]["prefill/float32"]}
        print_table(f"generation, impl {impl}: {rows} sequences x {args.tokens} tokens, "
                    f"{rows * args.tokens / g['cpu_s']:.1f} tokens per CPU second ({g['wall_s']:.1f} s wall clock)",
                    report_generation(model, g, lengths, rows, args.tokens, ceil))
    result["sampling"] = sampling_costs(model, prompts, tokenizer)
    print("\nsampling one step:", json.dumps(result["sampling"]), flush=True)
    pairs = [Pair.of(p, a.ids, b.ids) for p, (a, b) in zip(prompts, out)]
    seqs = [len(p.prompt_ids) + len(r.ids) for p in pairs[:16] for r in (p.chosen, p.rejected)]
    fwd = model_flops(model, sum(seqs), sum(seqs) / len(seqs) / 2, sum(len(p.chosen.ids) + len(p.rejected.ids)
                                                                           for p in pairs[:16]))
    result["training"] = []
    for path in args.train:
        train = profile_training(model, pairs, tokenizer.pad_token_id, path == "packed")
        result["training"].append(train)
        print_table(f"training step, {path}: {train['pairs']} pairs (model FLOPs of the unpacked sequences; "
                    "backward counted as 2x the forward)",
                    training_rows(train, fwd, result["ceiling_gflops"]["train/float32"]))
    result["ceiling_fp32_decode_end"] = round(ceiling(model, rows, torch.float32), 1)
    result["load_1min_end"] = os.getloadavg()[0]
    print(f"\nfp32 decode-shape ceiling at the start {result['ceiling_gflops']['decode/float32']} GFLOP/s, "
          f"at the end {result['ceiling_fp32_decode_end']}; load {result['load_1min_start']:.1f} -> "
          f"{result['load_1min_end']:.1f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
