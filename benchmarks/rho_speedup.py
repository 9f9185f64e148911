"""The embedded default at rho = 1 and rho = 0.5: time split per iteration and end-to-end speedup.

Both runs share one iteration 0 (as in the paper): the rho = 0.5 run (the embedded default) does it, the
rho = 1 run starts from it. A run already finished under --out is reused, so the default run can be timed
on its own first (`optune run output_dir=OUT/rho0.5`).
Usage (from the repo root; pin threads so both runs see the same machine):
    OMP_NUM_THREADS=2 python benchmarks/rho_speedup.py --out runs/bench-rho [key.sub=value ...]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from optune.cli import main as optune
from optune.store import RunStore, read_jsonl


def run(out: Path, overrides: list[str]) -> list[dict]:
    log = RunStore(out).metrics_log
    if not log.is_file() or len(log.read_text().splitlines()) < 3:
        args = ["run", "--resume", str(out)] if out.exists() else ["run", f"output_dir={out}", *overrides]
        if optune(args) != 0:
            sys.exit(f"run {out} failed")
    return read_jsonl(log)


def table(name: str, metrics: list[dict]) -> None:
    print(f"\n{name}")
    print("iter | regen | gen s | reward s | train s | other s | iter s | gen % | other % | held-out")
    for m in metrics:
        print(f"{m['iteration']:>4} | {m['selection/n_regenerated']:>5} | {m['time/generation_s']:>5.0f} | "
              f"{m['time/rewarding_s']:>8.1f} | {m['time/training_s']:>7.0f} | {m['time/bookkeeping_s']:>7.2f} | "
              f"{m['time/iteration_s']:>6.0f} | {100 * m['time/generation_frac']:>5.1f} | "
              f"{100 * m['time/bookkeeping_frac']:>7.2f} | {m.get('eval/heldout_reward', float('nan')):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench-rho", help="parent directory of the two runs")
    parser.add_argument("overrides", nargs="*", help="extra key.sub=value for both runs")
    args = parser.parse_args()
    out = Path(args.out)
    half = run(out / "rho0.5", ["selection.rho=0.5", *args.overrides])
    full = run(out / "rho1", ["selection.rho=1.0", f"init_from={out / 'rho0.5'}", *args.overrides])
    table("rho = 1.0 (Algorithm 2, every prompt regenerated)", full)
    table("rho = 0.5 (OPTune)", half)
    total_full, total_half = full[-1]["time/elapsed_s"], half[-1]["time/elapsed_s"]
    later_full = sum(m["time/iteration_s"] for m in full[1:])
    later_half = sum(m["time/iteration_s"] for m in half[1:])
    g = sum(m["time/generation_s"] for m in full[1:]) / later_full
    print(f"\nend to end (3 iterations, shared iteration 0): {total_full:.0f}s vs {total_half:.0f}s -> "
          f"speedup {total_full / total_half:.2f}x")
    print(f"iterations 1..T-1 only: {later_full:.0f}s vs {later_half:.0f}s -> speedup {later_full / later_half:.2f}x; "
          f"Amdahl bound 1/(1 - g(1 - rho)) with measured generation share g = {g:.2f}: "
          f"{1 / (1 - g * 0.5):.2f}x")
    overhead = max(m["time/bookkeeping_frac"] for m in half)
    print(f"reuse overhead (selection, store, bookkeeping): at most {100 * overhead:.2f}% of an iteration")
    heldout = [m.get("eval/heldout_reward", math.nan) for m in (full[-1], half[-1])]
    print(f"final held-out reward: rho=1 {heldout[0]:.4f}, rho=0.5 {heldout[1]:.4f}")


if __name__ == "__main__":
    main()
