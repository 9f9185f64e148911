"""The held-out KL pass in float32 and under bf16 autocast: time and the estimate, on a finished run's answers.

optune.runner.heldout.movement takes one forward pass of pi_0 (and of the reference) over the final policy's
greedy held-out answers; with train.bf16 resolved true that pass runs under bf16 autocast. This times both
precisions on the same answers and prints the KL estimate (mean of the policy's decode log-probs minus pi_0's)
and how far each answer's log-prob moved.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/kl_precision.py RUN [--iteration 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from optune.data.prompts import load_prompts
from optune.generation import encode_prompt
from optune.models.policy import load_model, load_tokenizer
from optune.runner.prepare import resolve_policy
from optune.training.logps import responses_logps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--iteration", type=int, default=2)
    args = parser.parse_args()
    rows = [json.loads(line) for f in sorted((args.run / f"iter_{args.iteration:03d}" / "heldout").glob("*.jsonl"))
            for line in f.read_text().splitlines()]
    initial = resolve_policy("embedded:smollm2-135m-instruct")
    tok = load_tokenizer(initial)
    by_id = {p.id: p for p in load_prompts("verifiable:heldout", None)}
    prompts = [encode_prompt(tok, by_id[r["prompt_id"]], 256) for r in rows]
    mine = torch.tensor([r["logp"] for r in rows])
    model = load_model(initial)
    out = {}
    for bf16 in (False, True):
        start = time.perf_counter()
        out[bf16] = torch.tensor(responses_logps(model, prompts, [r["ids"] for r in rows], tok.pad_token_id, 16, bf16))
        print(f"{'bf16' if bf16 else 'float32'}: {time.perf_counter() - start:.1f} s, KL estimate "
              f"{float((mine - out[bf16]).mean()):.3f} over {len(rows)} answers")
    moved = (out[True] - out[False]).abs()
    print(f"per answer, |bf16 - float32| log-prob: mean {float(moved.mean()):.3f}, max {float(moved.max()):.3f}")


if __name__ == "__main__":
    main()
