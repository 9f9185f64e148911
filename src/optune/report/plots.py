"""The report's PNG charts (matplotlib, Agg backend: no screen needed).

Each function draws one chart from loaded runs and returns the file it wrote, or None when the
runs lack the data for it (so a report of a half-configured run still has the other charts).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from optune.report.runs import REUSED_NOTE, Run, chosen_rewards, gain_note, gain_splits, heldout_curve, reused_top
from optune.store import atomic_write

TIME_PARTS = (("time/generation_s", "generation"), ("time/rewarding_s", "rewarding"),
              ("time/training_s", "training"), ("time/eval_s", "held-out eval"))


def _save(fig, path: Path) -> Path:
    """Save atomically: a reader never sees a half-written PNG."""
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
    return path


def reward_per_iteration(runs: list[Run], path: Path) -> Path | None:
    fig, ax = plt.subplots(figsize=(7, 4.2))
    drawn = False
    for i, run in enumerate(runs):
        color = f"C{i}"
        scores = run.series("objective/scores")
        pts = [(t, v) for t, v in zip(run.iterations, scores) if v is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", color=color, label=f"{run.name}: training chosen reward")
            drawn = True
        held = [(t + 1, v) for t, v in zip(run.iterations, run.series("eval/heldout_reward")) if v is not None]
        start = run.metrics[0].get("eval/heldout_reward_start")
        if isinstance(start, (int, float)):
            held.insert(0, (0, float(start)))
        if held:
            ax.plot(*zip(*held), "s--", color=color, label=f"{run.name}: held-out reward")
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("iteration t (held-out: policy after t iterations; 0 = starting policy)")
    ax.set_ylabel("mean reward")
    ax.set_title("Reward per iteration")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def _after_start(run: Run, key: str, start: float | None = None) -> list[tuple[int, float]]:
    """(policy index, value): 0 for the starting policy (`key`_start, else `start`), t + 1 after iteration t."""
    first = run.metrics[0].get(f"{key}_start", start) if run.metrics else None
    pts = [(0, float(first))] if isinstance(first, (int, float)) else []
    return pts + [(t + 1, v) for t, v in zip(run.iterations, run.series(key)) if v is not None]


def health_per_iteration(runs: list[Run], path: Path) -> Path | None:
    """Held-out reward, KL from the reference and from pi_0, and response length on one figure: a reward that
    rises while the answers shrink or the policy runs far from pi_0 is visible at a glance."""
    panels = (("eval/heldout_reward", "held-out reward", None), ("eval/kl_initial", "log-ratio to pi_0 (KL est.)", 0.0),
              ("eval/length_words", "held-out words per response", None))
    if not any(_after_start(run, "eval/length_words") for run in runs):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    for ax, (key, label, start) in zip(axes, panels):
        for i, run in enumerate(runs):
            pts = _after_start(run, key, start)
            if pts:
                ax.plot(*zip(*pts), "o-", color=f"C{i}", label=run.name)
            if key == "eval/kl_initial":
                ref = _after_start(run, "eval/kl_reference", 0.0)
                if len(ref) > 1:
                    ax.plot(*zip(*ref), "x:", color=f"C{i}", label=f"{run.name}: to its reference")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("policy after t iterations (0 = start)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def time_per_iteration(runs: list[Run], path: Path) -> Path | None:
    """Stacked bars per iteration (the paper's Table 1 split); runs side by side."""
    if not any(v is not None for run in runs for key, _ in TIME_PARTS for v in run.series(key)):
        return None
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * len(runs) * max(len(r.metrics) for r in runs)), 4.2))
    width = 0.8 / len(runs)
    for r, run in enumerate(runs):
        xs = [t + (r - (len(runs) - 1) / 2) * width for t in run.iterations]
        bottom = [0.0] * len(xs)
        for p, (key, label) in enumerate(TIME_PARTS):
            vals = [v or 0.0 for v in run.series(key)]
            ax.bar(xs, vals, width * 0.95, bottom=bottom, color=f"C{p}", label=label if r == 0 else None,
                   hatch="//" if key == "time/eval_s" else None, edgecolor="white")
            bottom = [b + v for b, v in zip(bottom, vals)]
        if len(runs) > 1:
            for x, b in zip(xs, bottom):
                ax.annotate(run.name, (x, b), xytext=(0, 2), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7)
    ax.set_xlabel("iteration")
    ax.set_ylabel("seconds")
    ax.set_title("Time per iteration by stage")
    ax.set_xticks(sorted({t for run in runs for t in run.iterations}))
    ax.set_ylim(0, ax.get_ylim()[1] * 1.08)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def heldout_vs_time(runs: list[Run], path: Path) -> Path | None:
    """Held-out reward against cumulative tuning time, every run on one chart (Fig. 5 and 6)."""
    curves = [(run, *heldout_curve(run)) for run in runs]
    if not any(xs for _, xs, _ in curves):
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (run, xs, ys) in enumerate(curves):
        if xs:
            ax.plot([x / 60 for x in xs], ys, "o-", color=f"C{i}", label=run.name)
    # No offset notation (a "+1.234e1" corner label makes noise in the 4th digit look like a drop), and a y range
    # of at least 0.1 reward around the data for the same reason.
    ax.ticklabel_format(useOffset=False)
    ys_all = [y for _, _, ys in curves for y in ys]
    mid, span = (max(ys_all) + min(ys_all)) / 2, max(max(ys_all) - min(ys_all), 0.1)
    ax.set_ylim(mid - 0.6 * span, mid + 0.6 * span)
    ax.set_xlim(left=0)
    ax.set_xlabel("minutes from the start (held-out evaluation time excluded)")
    ax.set_ylabel("mean held-out reward")
    ax.set_title("Held-out reward vs time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def gain_share(runs: list[Run], path: Path) -> Path | None:
    """Signed chosen-reward gain of the bottom and top half of prompts at t-1 (the paper's Fig. 2), every
    iteration drawn: shares of a loss mean nothing, so the bars are gains and the shares are written below."""
    bars = [(run.name, t, s) for run in runs for t, s in gain_splits(run).items()]
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(bars) + 2.5), 4.6))
    xs = list(range(len(bars)))
    for offset, key, color, label in ((-0.2, "bottom", "C3", "bottom 50% of prompts at t-1"),
                                      (0.2, "top", "C0", "top 50% of prompts at t-1")):
        vals = [b[2][f"gain_{key}"] for b in bars]
        ax.bar([x + offset for x in xs], vals, 0.38, color=color, label=label)
        for x, v, b in zip(xs, vals, bars):
            reused = " (reused)" if b[2].get(f"regenerated_{key}") == 0 else ""
            ax.annotate(f"{v:+.2f}{reused}", (x + offset, v), xytext=(0, 2 if v >= 0 else -2),
                        textcoords="offset points", ha="center", va="bottom" if v >= 0 else "top", fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(xs, [f"{name}\nt={t}\n{gain_note(s)}" for name, t, s in bars], fontsize=8)
    lo, hi = ax.get_ylim()
    pad = 0.12 * (hi - lo)
    ax.set_ylim(min(lo, 0) - pad, max(hi, 0) + pad)
    ax.set_ylabel("change of chosen reward, summed over the half")
    title = "Where the reward gain came from (paper Fig. 2)"
    if reused_top([b[2] for b in bars]):
        title += "\n" + textwrap.fill(REUSED_NOTE, 80)  # one long line ran past the figure's edges
    ax.set_title(title, fontsize=9 if "\n" in title else 11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, path)


def reward_histograms(run: Run, path: Path) -> Path | None:
    """Chosen-reward distribution of the training prompts at every iteration, one run per figure."""
    per_iter = {t: list(chosen_rewards(rows).values()) for t, rows in sorted(run.responses.items())}
    per_iter = {t: v for t, v in per_iter.items() if v}
    if not per_iter:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    lo = min(min(v) for v in per_iter.values())
    hi = max(max(v) for v in per_iter.values())
    bins = 20 if hi > lo else 1
    for i, (t, vals) in enumerate(per_iter.items()):
        ax.hist(vals, bins=bins, range=(lo, hi if hi > lo else lo + 1), histtype="step", linewidth=1.8,
                color=f"C{i}", label=f"iteration {t} (mean {sum(vals) / len(vals):.3f})")
    ax.set_xlabel("reward of the chosen response")
    ax.set_ylabel("prompts")
    ax.set_title(f"Chosen-reward distribution per iteration: {run.name}")
    ax.legend(fontsize=8)
    return _save(fig, path)
