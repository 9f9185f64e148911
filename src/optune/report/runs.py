"""Reading run directories written by `optune run`, and the numbers the report derives from them.

Readers are tolerant: a missing optional metric gives None (and the plot that needs it is
skipped), and a run still in progress is read up to its last finished iteration. A run writes each file
whole, so a JSONL line that does not read is damage: the file is named in one line on stderr and its
readable lines are used (a damaged metrics.jsonl is read from the iterations' metrics.json instead). Only a
folder with no metrics at all is an error.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

from optune.errors import UserError
from optune.store import RunStore, damage


def _read_rows(path: Path) -> tuple[list[dict], str | None]:
    """The JSON objects of a JSONL file of a run (none where it is absent), and what is wrong with it if a line
    does not read: a run writes these files whole (atomically), so such a line is damage, not a torn write."""
    if not path.is_file():
        return [], None
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as err:
        return [], damage(err)
    rows, bad = [], []
    for number, line in enumerate(lines, 1):
        if line.strip():
            try:
                row = json.loads(line.decode("utf-8"))
            except (ValueError, RecursionError):  # ValueError: not JSON, or not UTF-8
                row = None
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad.append(number)
    if not bad:
        return rows, None
    return rows, (f"line {bad[0]} is not a JSON record" if len(bad) == 1 else
                  f"{len(bad)} lines are not JSON records, the first line {bad[0]}")


def _jsonl_rows(path: Path) -> list[dict]:
    """`_read_rows`; a damaged file is named in one line on stderr, and its readable rows are used."""
    rows, problem = _read_rows(path)
    if problem:
        print(f"{path} is damaged ({problem}): the report leaves those lines out", file=sys.stderr, flush=True)
    return rows


def _metrics(store: RunStore) -> list[dict]:
    """One row per finished iteration: metrics.jsonl, or where it is damaged the iterations' own metrics.json
    (metrics.jsonl is rebuilt from them, so they say the same)."""
    rows, problem = _read_rows(store.metrics_log)
    if not problem:
        return rows
    if not store.finished_iterations():  # a folder with metrics.jsonl alone (made by hand or another tool)
        print(f"{store.metrics_log} is damaged ({problem}): the report leaves those lines out", file=sys.stderr,
              flush=True)
        return rows
    print(f"{store.metrics_log} is damaged ({problem}): reading each iteration's metrics.json instead",
          file=sys.stderr, flush=True)
    return [row for t in store.finished_iterations()
            if isinstance(row := store.read_finished(t, store.metrics(t)), dict)]


@dataclass
class Run:
    name: str
    path: Path
    metrics: list[dict]
    responses: dict[int, list[dict]] = field(default_factory=dict)  # iteration -> rows of responses.jsonl
    heldout: dict[int, list[dict]] = field(default_factory=dict)    # iteration -> rows of heldout.jsonl
    heldout_start: list[dict] = field(default_factory=list)

    def series(self, key: str) -> list[float | None]:
        """One value per finished iteration (None where the metric is missing or not finite)."""
        out = []
        for m in self.metrics:
            v = m.get(key)
            out.append(float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None)
        return out

    @property
    def iterations(self) -> list[int]:
        return [int(m.get("iteration", i)) for i, m in enumerate(self.metrics)]


def load_run(path: str | Path, name: str | None = None) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run directory not found: {path}")
    store = RunStore(path, writer=False)
    metrics = sorted(_metrics(store), key=lambda m: m.get("iteration", 0))
    if not metrics:
        raise UserError(f"{path}: no finished iteration (metrics.jsonl missing or empty)")
    run = Run(name=name or path.resolve().name, path=path, metrics=metrics)
    for t in store.iterations():
        run.responses[t] = _jsonl_rows(store.responses(t))
        run.heldout[t] = _jsonl_rows(store.heldout(t))
    run.heldout_start = _jsonl_rows(store.heldout(0, start=True))
    return run


def chosen_rewards(rows: list[dict]) -> dict[str, float]:
    """prompt_id -> reward of the chosen (higher-reward) response; rows without rewards are skipped."""
    out = {}
    for row in rows:
        raw = [r.get("reward") for r in row.get("responses", []) if isinstance(r, dict)]
        rewards = [float(r) for r in raw if isinstance(r, (int, float)) and math.isfinite(r)]
        if rewards and "prompt_id" in row:
            out[str(row["prompt_id"])] = max(rewards)
    return out


def gain_split(previous: dict[str, float], current: dict[str, float], regenerated: set[str] | None = None
               ) -> dict | None:
    """Reward gain of the bottom vs top half of prompts, ranked by chosen reward at iteration t-1.

    The paper's Fig. 2: prompts are split at the median of the previous iteration's chosen reward
    (ties broken by id, so the split is reproducible); gain = change of chosen reward. Shares are
    given only when the total gain is positive, as a share of a loss has no clear meaning. With `regenerated`
    (the prompts given new responses at t), how many of each half were: with rho < 1 a half that kept its
    responses gains nothing by construction, and the chart and table say so.
    """
    common = sorted(set(previous) & set(current), key=lambda k: (previous[k], k))
    if len(common) < 2:
        return None
    half = len(common) // 2
    bottom = sum(current[k] - previous[k] for k in common[:half])
    top = sum(current[k] - previous[k] for k in common[half:])
    total = bottom + top
    out = {"n_prompts": len(common), "gain_bottom": bottom, "gain_top": top, "gain_total": total,
           "share_bottom": bottom / total if total > 0 else None,
           "share_top": top / total if total > 0 else None}
    if regenerated is not None:
        out["regenerated_bottom"] = sum(k in regenerated for k in common[:half])
        out["regenerated_top"] = sum(k in regenerated for k in common[half:])
    return out


def regenerated_ids(rows: list[dict], t: int) -> set[str]:
    """Prompts whose responses were generated at iteration t (the others reused earlier ones)."""
    return {str(row["prompt_id"]) for row in rows if "prompt_id" in row
            and any(isinstance(r, dict) and r.get("generated_at") == t for r in row.get("responses", []))}


def gain_splits(run: Run) -> dict[int, dict]:
    """gain_split for every iteration t >= 1 that has responses for t-1 and t, with how many prompts of each half
    were regenerated at t: with rho < 1 a half of reused responses gains nothing by construction."""
    out = {}
    for t in sorted(run.responses):
        if t - 1 in run.responses:
            # an empty set: rows without generated_at (older runs), so no count rather than a count of 0
            split = gain_split(chosen_rewards(run.responses[t - 1]), chosen_rewards(run.responses[t]),
                               regenerated_ids(run.responses[t], t) or None)
            if split:
                out[t] = split
    return out


def gain_note(split: dict) -> str:
    """What an iteration's two gains mean together: the shares when the total is a gain, else why there are none."""
    if split["share_bottom"] is not None:
        return f"shares {100 * split['share_bottom']:.0f}% / {100 * split['share_top']:.0f}%"
    if split["gain_bottom"] < 0 and split["gain_top"] < 0:
        return "both halves lost reward"
    return "net loss: no shares"


def reused_top(splits: list[dict]) -> bool:
    """True when some iteration regenerated no prompt of the top half (rho < 1 with selection by reward)."""
    return any(s.get("regenerated_top") == 0 and s.get("regenerated_bottom") for s in splits)


REUSED_NOTE = ("rho < 1: a half whose prompts all kept their responses (none regenerated, as lowest-first "
               "selection leaves the top half) gains 0 by construction")


def heldout_curve(run: Run) -> tuple[list[float], list[float]]:
    """(wall-clock seconds without evaluation time, held-out reward) from the start policy onwards.

    Evaluation time is taken out of the clock so that runs with different evaluation settings are
    compared on the cost of tuning alone.
    """
    xs, ys = [], []
    start = run.metrics[0].get("eval/heldout_reward_start")
    if isinstance(start, (int, float)):
        xs.append(0.0)
        ys.append(float(start))
    eval_total = 0.0
    for m in run.metrics:
        eval_total += float(m.get("time/eval_s") or 0.0)
        elapsed, reward = m.get("time/elapsed_s"), m.get("eval/heldout_reward")
        if isinstance(elapsed, (int, float)) and isinstance(reward, (int, float)):
            xs.append(max(0.0, float(elapsed) - eval_total))
            ys.append(float(reward))
    return xs, ys
