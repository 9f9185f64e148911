"""IFEval over seeds: each seed's final model against pi_0, with a two-level bootstrap (seeds, then prompts).

`optune ifeval` compares checkpoints on one seed (a paired bootstrap over prompts). A claim about a training
recipe needs its seeds too: this reads the per-prompt scores `optune ifeval` wrote (scores_<name>.jsonl) for pi_0
and for each seed's final checkpoint, and prints the four accuracies per seed and each accuracy's difference from
pi_0 with the interval of grid.py's hier_bootstrap. Instruction-level differences weight each prompt by its
number of instructions (the accuracy is over instructions).

Usage (repo root), after `optune ifeval --model embedded:smollm2-135m-instruct --model RUN_s/iter_002/checkpoint
... --max-new-tokens 256 --out OUT_s` for each seed:
    python benchmarks/ifeval_seeds.py --base OUT_0/scores_smollm2-135m-instruct.jsonl \\
        --seed-scores OUT_0/scores_checkpoint.jsonl OUT_1/scores_checkpoint.jsonl OUT_2/scores_checkpoint.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from grid import fmt_ci, hier_bootstrap

METRICS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")


def read_scores(path: Path) -> dict[int, dict]:
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


def per_prompt(scores: dict[int, dict], keys: list[int], metric: str) -> np.ndarray:
    """Per prompt: 1/0 whether all its instructions are followed (prompt-level), or how many are (inst-level)."""
    kind = metric.split("_")[1]
    flags = [scores[k][kind] for k in keys]
    return np.array([all(f) for f in flags] if metric.startswith("prompt") else [sum(f) for f in flags], float)


def table(base: dict[int, dict], seeds: list[dict[int, dict]]) -> list[str]:
    keys = sorted(base)
    if any(sorted(s) != keys for s in seeds):
        raise SystemExit("the scores files cover different prompts; score every model on the same IFEval items")
    n_inst = sum(len(base[k]["strict"]) for k in keys)
    scale = {m: (len(keys) / n_inst if m.startswith("inst") else 1.0) for m in METRICS}
    lines = ["| model | " + " | ".join(METRICS) + " |", "|---" * 5 + "|"]
    for name, s in [("pi_0", base)] + [(f"seed {i}", s) for i, s in enumerate(seeds)]:
        cells = [100 * per_prompt(s, keys, m).mean() * scale[m] for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    lines += ["", f"final minus pi_0, points, {len(seeds)} seed(s) x {len(keys)} prompts (seeds, then prompts):"]
    for m in METRICS:
        diff = np.stack([per_prompt(s, keys, m) - per_prompt(base, keys, m) for s in seeds]) * scale[m] * 100
        lines.append(f"  {m}: {fmt_ci(hier_bootstrap(diff))}")
    return lines


def ended_share(responses: Path, tokenizer_dir: str, budget: int) -> float:
    """Share of a responses_<name>.json's answers that ended before the token budget: re-tokenized, fewer tokens
    than the budget (a cut answer has exactly the budget; the decode round trip can move a count by a token)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = json.loads(responses.read_text())["rows"]
    return float(np.mean([len(tok(r["response"], add_special_tokens=False)["input_ids"]) < budget - 1
                          for r in rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="pi_0's scores_<name>.jsonl")
    parser.add_argument("--seed-scores", type=Path, nargs="+", required=True,
                        help="each seed's final model's scores_<name>.jsonl")
    parser.add_argument("--ended", type=Path, nargs="*", default=[],
                        help="responses_<name>.json files: print the share of answers that ended within --budget")
    parser.add_argument("--budget", type=int, default=256, help="the --max-new-tokens they were generated with")
    parser.add_argument("--tokenizer", default=str(Path.home() / ".cache/optune/models/smollm2-135m-instruct"))
    args = parser.parse_args()
    print("\n".join(table(read_scores(args.base), [read_scores(p) for p in args.seed_scores])))
    for path in args.ended:
        print(f"{path}: {ended_share(path, args.tokenizer, args.budget):.3f} of answers ended within {args.budget} "
              "tokens")


if __name__ == "__main__":
    main()
