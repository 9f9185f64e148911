"""`optune bench`: lm-evaluation-harness benchmarks of a checkpoint (optune.eval.bench)."""

from __future__ import annotations

import argparse
from pathlib import Path

from optune.errors import UserError
from optune.eval.bench import parse_tasks, resolve_checkpoint, run_bench
from optune.eval.export import write_json_atomic
from optune.store.outdir import check_out_file


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="checkpoint folder, or a run directory (its latest iteration's checkpoint)")
    parser.add_argument("--tasks", default="paper",
                        help="'paper' (Table 5) or TASK[:SHOTS[:METRIC[:FILTER]]],... "
                             "e.g. gsm8k:5:exact_match:strict-match")
    parser.add_argument("--include-path", help="folder of extra lm-eval task YAML files")
    parser.add_argument("--limit", type=float, help="examples per task (a fraction if < 1), for quick checks")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="result JSON file (default: RUN_DIR/bench/iter_XXX.json)")


def main(args) -> int:
    checkpoint, default_out = resolve_checkpoint(Path(args.path))
    if args.out:
        out = Path(args.out)
    elif default_out is not None:
        out = default_out
    else:
        raise UserError("a checkpoint outside a run directory needs --out FILE")
    check_out_file(out)  # before the benchmarks run, not after
    if args.include_path and not Path(args.include_path).is_dir():
        raise UserError(f"--include-path is not a folder: {args.include_path}")
    result = run_bench(checkpoint, parse_tasks(args.tasks), include_path=args.include_path, limit=args.limit,
                       batch_size=args.batch_size, device=args.device, seed=args.seed)
    write_json_atomic(out, result)
    cells = ", ".join(f"{k} {v:.2f}" for k, v in result["scores"].items())
    print(f"{cells}; average {result['average']:.2f} -> {out}")
    return 0
