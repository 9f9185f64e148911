"""`optune export RUN_DIR [--out DIR] [--dedupe]`: a run's preference pairs in TRL's format and a model card
(optune.report.export)."""

from __future__ import annotations

import argparse
from pathlib import Path

from optune.store.outdir import out_dir


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory of optune run or optune dpo")
    parser.add_argument("--out", metavar="DIR", help="output folder (default: RUN_DIR/export)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into --out even if it holds files optune export did not write")
    parser.add_argument("--dedupe", action="store_true",
                        help="one row per distinct (prompt, chosen, rejected), from the first iteration that trained "
                             "on it (default: one row per iteration, so pairs OPTune reused repeat)")


def main(args: argparse.Namespace) -> int:
    from optune.report.export import export_run

    if args.out is None:  # RUN_DIR/export: inside the run, so optune's own
        result = export_run(args.run_dir, None, dedupe=args.dedupe)
    else:
        with out_dir(Path(args.out), "optune export", args.overwrite) as out:
            result = export_run(args.run_dir, out, dedupe=args.dedupe)
    counts = ", ".join(f"iteration {t}: {n}" for t, n in result.pairs_per_iteration.items())
    n = result.repeats_dropped
    dropped = f"; {n} repeat{'' if n == 1 else 's'} of an earlier pair left out" if args.dedupe else ""
    print(f"optune export: {result.rows} pairs ({counts}{dropped}) -> {result.parquet}, {result.jsonl}")
    print(f"optune export: prompt texts from {result.prompts_from}")
    print(f"optune export: model card -> {result.model_card}")
    return 0
