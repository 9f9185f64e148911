"""`optune report RUN_DIR [RUN_DIR ...]`: charts (PNG) and report.md, in --out or by default RUN_DIR/report for
one run and report-<timestamp>/ beside several (in the folder that holds them all); the path is printed."""

from __future__ import annotations

import argparse
import os
import re
import time
from pathlib import Path

from optune.errors import UserError
from optune.store import atomic_write_text
from optune.store.outdir import out_dir


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories written by optune run")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/report for one run, report-<timestamp> in "
                        "the folder holding several)")
    parser.add_argument("--names", help="comma-separated display names, one per run (default: folder names)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into --out even if it holds files optune report did not write")


def build_report(run_dirs: list[str], out: Path, names: list[str] | None = None) -> Path:
    """Load the runs, draw every chart their data allow, write report.md; returns its path."""
    try:
        from optune.report import plots
    except ImportError as err:
        raise UserError(f"optune report needs matplotlib ({err}): pip install 'optune[report]'") from None
    from optune.report.runs import load_run
    from optune.report.summary import markdown

    if names is not None and len(names) != len(run_dirs):
        raise UserError(f"--names has {len(names)} names for {len(run_dirs)} runs")
    runs = [load_run(d, names[i] if names else None) for i, d in enumerate(run_dirs)]
    if len({r.name for r in runs}) != len(runs):
        raise UserError("two runs have the same name; pass --names")
    out.mkdir(parents=True, exist_ok=True)
    images = {
        "Reward per iteration": plots.reward_per_iteration(runs, out / "reward_per_iteration.png"),
        "Health: held-out reward, KL and length": plots.health_per_iteration(runs, out / "health.png"),
        "Time per iteration by stage": plots.time_per_iteration(runs, out / "time_per_iteration.png"),
        "Held-out reward vs wall-clock time": plots.heldout_vs_time(runs, out / "heldout_vs_time.png"),
        "Share of reward gain, bottom vs top half": plots.gain_share(runs, out / "gain_share.png"),
    }
    for run in runs:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run.name)
        images[f"Reward histograms: {run.name}"] = plots.reward_histograms(run, out / f"histograms_{safe}.png")
    report = out / "report.md"
    atomic_write_text(report, markdown(runs, images, out))
    return report


def default_out(run_dirs: list[str]) -> Path:
    """RUN_DIR/report for one run; for several, a new report-<timestamp> folder in the folder holding them all
    (runs/A runs/B -> runs/report-20260101-120000)."""
    if len(run_dirs) == 1:
        return Path(run_dirs[0]) / "report"
    parent = Path(os.path.commonpath([os.path.abspath(os.path.dirname(os.path.abspath(d))) for d in run_dirs]))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, n = parent / f"report-{stamp}", 1
    while out.exists():
        n += 1
        out = parent / f"report-{stamp}-{n}"
    return out


def main(args) -> int:
    names = [n.strip() for n in args.names.split(",")] if args.names else None
    if not args.out:
        report = build_report(args.run_dirs, default_out(args.run_dirs), names)
    else:
        with out_dir(Path(args.out), "optune report", args.overwrite) as out:
            report = build_report(args.run_dirs, out, names)
    print(f"report written to {report}")
    return 0
