"""The paper's claims on the built-in task: rho x selection x loss x seed, one shared iteration 0 each.

For every (seed, loss) the rho = 1 run does iteration 0 and the others start from it (`init_from`), so
cells differ only from iteration 1 on. rho = 1 regenerates every prompt, so its selection is moot and it
runs once. Finished runs are reused and interrupted ones resumed, so the grid can be run in parts
(e.g. one seed per call) whose results accumulate under --out; the tables are printed from whatever
has finished. Checkpoints after iteration 0 are deleted once a run is done (each is 0.5 GB).

Usage (repo root; pin threads, 2-core timings swing 10x under contention):
    OMP_NUM_THREADS=2 python benchmarks/grid.py --out runs/grid --seeds 0 [key.sub=value ...]
    python benchmarks/grid.py --out runs/grid --summary          # tables only, from finished runs
On the 2-core CPU use the small sizes in docs/results.md (one seed is one part); --jobs N runs N
(seed, loss) groups in parallel processes (GPU machines).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import sys
from itertools import product
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout_gain import paired_bootstrap

from optune.store import RunStore, read_jsonl

RHOS, SELECTIONS, LOSSES = (0.3, 0.5, 0.7, 1.0), ("optune", "random", "middle"), ("wdpo", "dpo")
ITERATIONS = 3


def cell_name(seed: int, loss: str, selection: str, rho: float) -> str:
    return f"s{seed}-{loss}-rho1.0" if rho == 1.0 else f"s{seed}-{loss}-{selection}-rho{rho}"


def group_cells(seed: int, loss: str, rhos, selections) -> list[tuple[str, list[str]]]:
    """(run name, overrides) of one (seed, loss) group; the rho = 1 base comes first."""
    base = cell_name(seed, loss, "optune", 1.0)
    common = [f"seed={seed}", f"loss.type={loss}", f"iterations={ITERATIONS}"]
    cells = [(base, [*common, "selection.strategy=optune", "selection.rho=1.0"])]
    for rho, sel in product(sorted(r for r in rhos if r != 1.0), selections):
        cells.append((cell_name(seed, loss, sel, rho),
                      [*common, f"selection.strategy={sel}", f"selection.rho={rho}", f"init_from=@{base}"]))
    return cells


def run_group(out: str, cells: list[tuple[str, list[str]]], overrides: list[str]) -> None:
    """Run (or resume) one group's cells in order; overrides may start with ["-c", CONFIG]."""
    from optune.cli import main as optune
    for name, cell in cells:
        run = Path(out) / name
        if _finished(run):
            continue
        cell = [c.replace("init_from=@", f"init_from={out}/") for c in cell]
        args = ["run", "--resume", str(run)] if run.exists() else ["run", f"output_dir={run}", *cell, *overrides]
        if optune(args) != 0:
            raise SystemExit(f"run {run} failed")
        for t in range(1, ITERATIONS):  # only iteration 0's checkpoint is shared; the rest are 0.5 GB each
            shutil.rmtree(RunStore(run).checkpoint(t), ignore_errors=True)


def _finished(run: Path) -> bool:
    path = RunStore(run).metrics_log
    return path.is_file() and len(path.read_text().splitlines()) >= ITERATIONS


# ---- reading and statistics -------------------------------------------------------------------------

def load(run: Path) -> dict:
    store = RunStore(run)
    metrics = read_jsonl(store.metrics_log)
    heldout = []
    for t in range(-1, len(metrics)):
        path = store.heldout(0, start=True) if t < 0 else store.heldout(t)
        rows = {r["prompt_id"]: r["reward"] for r in map(json.loads, path.read_text().splitlines())}
        heldout.append([rows[k] for k in sorted(rows)])
    return {"metrics": metrics, "heldout": np.array(heldout)}  # heldout: [start + iterations, prompts]


def hier_bootstrap(diff: np.ndarray, n: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of diff [seeds, prompts] and its 95% interval, resampling seeds and then prompts.

    Seeds and prompts are both random draws, so both are resampled; with one seed this is the paired
    prompt bootstrap.
    """
    if diff.shape[0] == 1:
        return paired_bootstrap(np.zeros(diff.shape[1]), diff[0], n=n, seed=seed)
    rng = np.random.default_rng(seed)
    s = rng.integers(0, diff.shape[0], size=(n, diff.shape[0]))
    p = rng.integers(0, diff.shape[1], size=(n, diff.shape[1]))
    means = np.array([diff[s[i]][:, p[i]].mean() for i in range(n)])
    return float(diff.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def fmt_ci(stat: tuple[float, float, float]) -> str:
    return f"{stat[0]:+.4f} [{stat[1]:+.4f}, {stat[2]:+.4f}]"


def responses(m: list[dict]) -> int:
    return sum(2 * x["selection/n_regenerated"] for x in m)


def run_table(runs: dict[str, dict]) -> list[str]:
    lines = ["run | held-out start, t=0, 1, 2 | gen s | reward s | train s | total s | responses | speedup | "
             "speedup t>=1", "--- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---:"]
    for name, r in sorted(runs.items()):
        m = r["metrics"]
        base = runs.get(name.split("-")[0] + "-" + name.split("-")[1] + "-rho1.0")
        curve = ", ".join(f"{v:.4f}" for v in r["heldout"].mean(axis=1))
        speed = later = "-"
        if base and len(base["metrics"]) == len(m):
            speed = f"{base['metrics'][-1]['time/elapsed_s'] / m[-1]['time/elapsed_s']:.2f}x"
            later = f"{_later(base['metrics']) / _later(m):.2f}x"
        lines.append(f"{name} | {curve} | {sum(x['time/generation_s'] for x in m):.0f} | "
                     f"{sum(x['time/rewarding_s'] for x in m):.1f} | {sum(x['time/training_s'] for x in m):.0f} | "
                     f"{m[-1]['time/elapsed_s']:.0f} | {responses(m)} | {speed} | {later}")
    return lines


def _later(metrics: list[dict]) -> float:
    return sum(x["time/iteration_s"] for x in metrics[1:])


def _stack(runs: dict, names: list[str], t: int) -> np.ndarray | None:
    rows = [runs[n]["heldout"][t + 1] for n in names if n in runs and len(runs[n]["heldout"]) > t + 1]
    return np.array(rows) if len(rows) == len(names) and rows else None


def claims(runs: dict[str, dict], seeds: list[int], out: Path) -> list[str]:
    """The four claims of the issue, each with its numbers and a plain verdict."""
    lines = []
    final = ITERATIONS - 1

    def diff(a: list[str], b: list[str], t: int = final):
        xa, xb = _stack(runs, a, t), _stack(runs, b, t)
        return None if xa is None or xb is None else hier_bootstrap(xa - xb)

    lines.append("\n### 1. rho = 0.5 / 0.7 (OPTune) vs rho = 1: final held-out reward and wall time")
    lines.append("loss | rho | held-out minus rho=1 [95%] | speedup end to end | speedup t>=1 | Amdahl bound t>=1")
    lines.append("--- | --- | --- | --- | --- | ---")
    for loss, rho in product(LOSSES, (0.5, 0.7)):
        cells = [cell_name(s, loss, "optune", rho) for s in seeds]
        bases = [cell_name(s, loss, "optune", 1.0) for s in seeds]
        d = diff(cells, bases)
        if d is None:
            continue
        pairs = [(runs[b]["metrics"], runs[c]["metrics"]) for b, c in zip(bases, cells)]
        e2e = [b[-1]["time/elapsed_s"] / c[-1]["time/elapsed_s"] for b, c in pairs]
        later = [_later(b) / _later(c) for b, c in pairs]
        g = [sum(x["time/generation_s"] for x in b[1:]) / _later(b) for b, _ in pairs]
        bound = [1 / (1 - gi * (1 - rho)) for gi in g]
        lines.append(f"{loss} | {rho} | {fmt_ci(d)} | {_spread(e2e)} | {_spread(later)} | {_spread(bound)}")
    lines.append("\n### 2. OPTune (lowest first) vs another selection rule at the same rho: final held-out reward")
    lines.append("loss | rho | other rule | optune minus other [95%]\n--- | --- | --- | ---")
    for loss, rho, other in product(LOSSES, sorted(r for r in RHOS if r != 1.0), SELECTIONS[1:]):
        d = diff([cell_name(s, loss, "optune", rho) for s in seeds], [cell_name(s, loss, other, rho) for s in seeds])
        if d is not None:
            lines.append(f"{loss} | {rho} | {other} | {fmt_ci(d)}")
    lines.append("\n### 3. wDPO vs DPO: held-out reward after each iteration (wdpo minus dpo [95%])")
    lines.append("selection, rho | after t=0 | after t=1 | after t=2\n--- | --- | --- | ---")
    for sel, rho in [("optune", 1.0), *product(SELECTIONS, (0.3, 0.5, 0.7))]:
        ds = [diff([cell_name(s, "wdpo", sel, rho) for s in seeds], [cell_name(s, "dpo", sel, rho) for s in seeds], t)
              for t in range(ITERATIONS)]
        if all(d is not None for d in ds):
            lines.append(f"{'-' if rho == 1.0 else sel}, {rho} | " + " | ".join(fmt_ci(d) for d in ds))
    lines.extend(_gain_shares(out, seeds))
    return lines


def _spread(values: list[float]) -> str:
    return f"{np.mean(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def _gain_shares(out: Path, seeds: list[int]) -> list[str]:
    """Fig. 2 on the rho = 1 runs (every prompt resampled, so each prompt's chosen reward is fresh)."""
    from optune.report.runs import gain_splits, load_run
    lines = ["\n### 4. Share of the next iteration's chosen-reward gain from the bottom / top half of prompts",
             "run | t | gain bottom | gain top | share bottom", "--- | --- | ---: | ---: | ---:"]
    bottom = total = 0.0
    for seed, loss in product(seeds, LOSSES):
        path = out / cell_name(seed, loss, "optune", 1.0)
        if not _finished(path):
            continue
        for t, split in gain_splits(load_run(path)).items():
            bottom, total = bottom + split["gain_bottom"], total + split["gain_total"]
            share = "-" if split["share_bottom"] is None else f"{split['share_bottom']:.1%}"
            lines.append(f"{path.name} | {t} | {split['gain_bottom']:+.2f} | {split['gain_top']:+.2f} | {share}")
    if total > 0:
        lines.append(f"all rho = 1 runs | | | | {bottom / total:.1%} (paper: 68.6%)")
    return lines


def summary(out: Path, seeds: list[int]) -> None:
    runs = {p.name: load(p) for p in sorted(out.iterdir()) if _finished(p)}
    if not runs:
        raise SystemExit(f"no finished runs under {out}")
    some = next(iter(runs.values()))
    print(f"{len(runs)} finished runs under {out}; {some['heldout'].shape[1]} held-out prompts; "
          f"held-out reward is the mean over prompts\n")
    print("\n".join(run_table(runs) + claims(runs, seeds, out)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/grid", help="parent directory of the runs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    parser.add_argument("--rhos", type=float, nargs="+", default=list(RHOS))
    parser.add_argument("--selections", nargs="+", default=list(SELECTIONS), choices=SELECTIONS)
    parser.add_argument("--jobs", type=int, default=1, help="(seed, loss) groups run in parallel processes")
    parser.add_argument("--summary", action="store_true", help="only print the tables of finished runs")
    parser.add_argument("-c", "--config", help="YAML config for every run (default: the embedded default)")
    parser.add_argument("overrides", nargs="*", help="key.sub=value for every run (sizes, device)")
    args = parser.parse_args()
    if args.config:
        args.overrides = ["-c", args.config, *args.overrides]
    out = Path(args.out)
    if not args.summary:
        out.mkdir(parents=True, exist_ok=True)
        groups = [group_cells(s, loss, args.rhos, args.selections) for s, loss in product(args.seeds, args.losses)]
        if args.jobs == 1:
            for cells in groups:
                run_group(str(out), cells, args.overrides)
        else:  # spawn: CUDA cannot be used in forked children
            with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
                pool.starmap(run_group, [(str(out), cells, args.overrides) for cells in groups])
    summary(out, args.seeds)


if __name__ == "__main__":
    main()
