"""Generation tokens/s of the transformers and vllm backends, side by side on the same prompts and settings.

    PYTHONPATH=src python benchmarks/generation_speed.py [--prompts 32] [--tokens 64] [--iteration]

Both backends sample 2 responses per prompt (top_p 0.9, temperature 1) from the same checkpoint (the
embedded SmolLM2-135M-Instruct; --model for another), responses forced to exactly --tokens tokens so both
produce the same number of tokens. vLLM's engine start is timed apart from its generation. --iteration also
runs one `optune run` iteration per backend on the same prompts and prints its time split.
Results go to stdout and --out (JSON). On a shared CPU the numbers move with the other load: say so.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def prompt_ids(tokenizer, n: int) -> list[list[int]]:
    from optune.generation import encode_prompt
    from optune.data.prompts import load_prompts

    return [encode_prompt(tokenizer, r, 256) for r in load_prompts("verifiable:train", n)]


def time_backend(backend: str, model_path: str, prompts: list[list[int]], tokens: int, batch: int) -> dict:
    from optune.config import GenerationConfig, PolicyConfig
    from optune.generation import make_generator
    from optune.models.policy import load_model, load_tokenizer

    tokenizer = load_tokenizer(model_path)
    cfg = GenerationConfig(backend=backend, max_new_tokens=tokens, min_new_tokens=tokens, batch_size=batch)
    generator = make_generator(cfg, tokenizer, PolicyConfig())
    model = load_model(model_path) if backend == "transformers" else None
    start_s = 0.0
    if backend == "vllm":  # start the engine on one prompt so generation time excludes the start-up
        start = time.perf_counter()
        generator.generate(model, prompts[:1], n=1, seed=0, path=model_path)
        start_s = time.perf_counter() - start
    per_call = max(1, batch // 2)
    start, generated = time.perf_counter(), 0
    for i in range(0, len(prompts), per_call):
        out = generator.generate(model, prompts[i:i + per_call], n=2, seed=i, path=model_path)
        generated += sum(len(s.ids) for samples in out for s in samples)
    seconds = time.perf_counter() - start
    if hasattr(generator, "release"):
        generator.release()
    return {"backend": backend, "sequences": 2 * len(prompts), "generated_tokens": generated,
            "generation_s": round(seconds, 2), "tokens_per_s": round(generated / seconds, 1),
            "engine_start_s": round(start_s, 1)}


def one_iteration(backend: str, model_path: str, n_prompts: int, tokens: int, out_dir: Path) -> dict:
    """Time split of one `optune run` iteration (held-out evaluation off) with this backend."""
    run = out_dir / f"iteration-{backend}"
    cmd = [sys.executable, "-m", "optune", "run", f"output_dir={run}", f"policy.model={model_path}",
           "iterations=1", f"data.max_prompts={n_prompts}", "eval.heldout=false", f"generation.backend={backend}",
           f"generation.max_new_tokens={tokens}"]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    subprocess.run(cmd, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    m = json.loads((run / "iter_000" / "metrics.json").read_text())
    return {"backend": backend, **{k: round(m[f"time/{k}_s"], 1) for k in
                                   ("generation", "rewarding", "training", "bookkeeping", "iteration")}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="checkpoint (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="sequences per generate call (generation.batch_size)")
    parser.add_argument("--iteration", action="store_true", help="also time one optune iteration per backend")
    parser.add_argument("--out", default="benchmarks/out/generation_speed.json")
    args = parser.parse_args()
    from optune.models.policy import EMBEDDED, load_tokenizer, resolve_model_path

    model_path = resolve_model_path(args.model or EMBEDDED)
    prompts = prompt_ids(load_tokenizer(model_path), args.prompts)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"model": args.model or EMBEDDED, "prompts": args.prompts, "tokens": args.tokens, "batch": args.batch,
              "threads": os.environ.get("OMP_NUM_THREADS"), "cpus": os.cpu_count(), "generation": []}
    jobs = [("generation", lambda b: time_backend(b, model_path, prompts, args.tokens, args.batch))]
    if args.iteration:
        result["iteration"] = []
        jobs.append(("iteration", lambda b: one_iteration(b, model_path, args.prompts, args.tokens, out.parent)))
    for key, job in jobs:
        for backend in ("transformers", "vllm"):
            result[key].append(job(backend))
            out.write_text(json.dumps(result, indent=1) + "\n")  # after each measurement: nothing lost
            print(json.dumps(result[key][-1]), flush=True)
    return 0


if __name__ == "__main__":  # vLLM's engine starts worker processes that re-import this module
    sys.exit(main())
