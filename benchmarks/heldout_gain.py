"""Held-out reward of a run before (pi_0) and after its last iteration, with a paired bootstrap 95% interval.

Usage: python benchmarks/heldout_gain.py RUN_DIR [--examples 3]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from optune.store import RunStore


def load(path: Path) -> dict[str, dict]:
    return {r["prompt_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def paired_bootstrap(before: np.ndarray, after: np.ndarray, n: int = 10_000, seed: int = 0):
    """Mean gain and its 95% percentile interval, resampling prompts (pairs kept together)."""
    diff = after - before
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n, len(diff)))].mean(axis=1)
    return diff.mean(), np.percentile(means, 2.5), np.percentile(means, 97.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--examples", type=int, default=3)
    args = parser.parse_args()
    run = Path(args.run_dir)
    store = RunStore(run)
    last = max(t for t in store.iterations() if store.heldout(t).is_file())
    start, end = load(store.heldout(0, start=True)), load(store.heldout(last))
    ids = [i for i in start if i in end]
    before = np.array([start[i]["reward"] for i in ids])
    after = np.array([end[i]["reward"] for i in ids])
    gain, lo, hi = paired_bootstrap(before, after)
    print(f"{run}: {len(ids)} held-out prompts, after iteration {last}")
    print(f"held-out reward {before.mean():.4f} -> {after.mean():.4f}; gain {gain:+.4f}, "
          f"95% paired bootstrap interval [{lo:+.4f}, {hi:+.4f}]"
          f" ({'excludes' if lo > 0 or hi < 0 else 'includes'} zero)")
    if before.min() >= 0 and after.max() <= 1:  # the verifiable task's scale: 1 = every constraint met
        print(f"all constraints met: {np.mean(before >= 1):.1%} -> {np.mean(after >= 1):.1%}")
    order = sorted(ids, key=lambda i: end[i]["reward"] - start[i]["reward"], reverse=True)
    for i in order[: args.examples]:
        print(f"\n--- {i} ---\nPROMPT: {start[i]['prompt']}\nBEFORE ({start[i]['reward']:.3f}): {start[i]['response']}"
              f"\nAFTER  ({end[i]['reward']:.3f}): {end[i]['response']}")


if __name__ == "__main__":
    main()
