"""What one iteration pays to give the vLLM engine the new policy: a restart against an in-place load.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/vllm_update.py [--model PATH] [--rounds 3] [--out F.json]

pi_1 is pi_0 (a tiny Llama built here, or --model, e.g. ~/.cache/optune/models/smollm2-135m-instruct) with
every weight moved by Gaussian noise, saved next to it. Each round times, through optune's vllm generator as
the loop drives it: "restart" (shut the engine down before training, start a new one on pi_1:
generation.vllm_update=restart) and "inplace" (pause, then load pi_1 into the running engine:
generation.vllm_update=inplace). Generation itself is the same in both and not timed. After the last round,
the in-place engine's greedy answers (token ids and log-probs) on a few prompts are compared with the
restarted engine's: they must be equal.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

PROMPTS = [[1] + [(7 * i + 3 * k) % 250 + 5 for k in range(60)] for i in range(4)]


def moved(src: Path, dst: Path, scale: float = 0.01) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32)
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=noise) * scale)
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(str(src)).save_pretrained(dst)
    return dst


def generator(update: str, tokenizer, fraction: float):
    from optune.config.run import GenerationConfig, PolicyConfig
    from optune.generation.vllm import VLLMGenerator

    cfg = GenerationConfig(backend="vllm", vllm_update=update, max_new_tokens=16, batch_size=8,
                           vllm_memory_fraction=fraction)
    return VLLMGenerator(cfg, tokenizer, PolicyConfig(max_prompt_tokens=64))


def greedy(gen, path: Path) -> list:
    return [(o[0].ids, o[0].logp) for o in gen.generate(None, PROMPTS, n=1, greedy=True, seed=0, path=str(path))]


def timed(gen, path: Path) -> float:
    """Seconds to give `gen`'s engine the checkpoint at `path` after training, as the loop does."""
    start = time.perf_counter()
    gen.pause()
    gen._engine(str(path), 0)
    return time.perf_counter() - start


def run(pi0: Path, pi1: Path, rounds: int, fraction: float) -> dict:
    from optune.models.policy import load_tokenizer

    tok = load_tokenizer(str(pi0))
    restart, inplace = generator("restart", tok, fraction), generator("inplace", tok, fraction)
    greedy(restart, pi0)
    greedy(inplace, pi0)
    times: dict[str, list[float]] = {"restart": [], "inplace": []}
    for r in range(rounds):  # each round gives each engine pi_1 then pi_0 back: two updates per round
        for path in (pi1, pi0) if r < rounds - 1 else (pi1,):
            times["restart"].append(timed(restart, path))
            times["inplace"].append(timed(inplace, path))
            print(f"update to {path.name}: restart {times['restart'][-1]:.2f} s, inplace {times['inplace'][-1]:.3f} s",
                  flush=True)
    same = greedy(inplace, pi1) == greedy(restart, pi1)
    restart.release()
    inplace.release()
    return {"model": str(pi0), "updates": len(times["restart"]), "seconds": times,
            "median_s": {k: statistics.median(v) for k, v in times.items()}, "greedy_equal": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="pi_0 checkpoint (default: a tiny Llama built here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-fraction", type=float, default=0.05, help="generation.vllm_memory_fraction")
    parser.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            pi0 = Path(args.model).expanduser()
        else:
            from optune.models.tiny import build_tiny_policy

            pi0 = build_tiny_policy(Path(tmp) / "pi0", hidden=128, heads=2, kv_heads=1)
        result = run(pi0, moved(pi0, Path(tmp) / "pi1"), args.rounds, args.memory_fraction)
    med = result["median_s"]
    print(f"\n{result['model']}: engine restart {med['restart']:.2f} s, in-place load {med['inplace']:.3f} s "
          f"(median of {result['updates']}); saved per update {med['restart'] - med['inplace']:.2f} s; "
          f"greedy answers equal after the update: {result['greedy_equal']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
