"""The Markdown summary of a report: a table per concern, readable without the code."""

from __future__ import annotations

from pathlib import Path

from optune.formatting import num
from optune.report.components import component_means
from optune.report.runs import REUSED_NOTE, Run, gain_note, gain_splits, reused_top


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return num(value, digits)  # never "-0.000"
    return str(value)


def _total(run: Run, key: str) -> float | None:
    vals = [v for v in run.series(key) if v is not None]
    return sum(vals) if vals else None


def _overview_rows(runs: list[Run]) -> list[str]:
    header = ("| run | iterations | held-out reward: start → end | training chosen reward: first → last | "
              "prompts regenerated (sum) | wall clock (min) | time vs first run |")
    rows = [header, "|---|---|---|---|---|---|---|"]
    first_elapsed = runs[0].series("time/elapsed_s")[-1]
    for run in runs:
        held = [v for v in run.series("eval/heldout_reward") if v is not None]
        start = run.metrics[0].get("eval/heldout_reward_start")
        scores = [v for v in run.series("objective/scores") if v is not None]
        elapsed = run.series("time/elapsed_s")[-1]
        regen = _total(run, "selection/n_regenerated")
        rows.append(f"| {run.name} | {len(run.metrics)} | {_fmt(start)} → {_fmt(held[-1] if held else None)} | "
                    f"{_fmt(scores[0] if scores else None)} → {_fmt(scores[-1] if scores else None)} | "
                    f"{_fmt(int(regen) if regen is not None else None)} | "
                    f"{_fmt(elapsed / 60 if elapsed is not None else None, 2)} | "
                    f"{f'{elapsed / first_elapsed:.2f}x' if elapsed and first_elapsed else '–'} |")
    return rows


def _time_rows(runs: list[Run]) -> list[str]:
    rows = ["| run | generation | rewarding | training | held-out eval | total (s) |", "|---|---|---|---|---|---|"]
    for run in runs:
        parts = [_total(run, k) or 0.0 for k in ("time/generation_s", "time/rewarding_s", "time/training_s",
                                                 "time/eval_s")]
        total = sum(parts)
        cells = [f"{p:.1f} s ({100 * p / total:.1f}%)" if total else "–" for p in parts]
        rows.append(f"| {run.name} | " + " | ".join(cells) + f" | {total:.1f} |")
    return rows


HEALTH = (("eval/heldout_reward", "held-out reward"), ("eval/length_words", "words"),
          ("eval/length_tokens", "tokens"), ("eval/eos_rate", "EOS rate"), ("eval/repetition_rate", "repetitive"),
          ("eval/kl_reference", "KL to reference"), ("eval/kl_initial", "KL to pi_0"),
          ("rewards/margins_after", "margin after"))


def _health_rows(runs: list[Run]) -> list[str]:
    """Per policy, what optune.runner.health records: the start (pi_0), then after each iteration."""
    rows = ["| run | policy | " + " | ".join(label for _, label in HEALTH) + " |",
            "|---|---" + "|---" * len(HEALTH) + "|"]
    for run in runs:
        if not run.metrics or "eval/length_words" not in run.metrics[-1]:
            continue
        first = run.metrics[0]
        if "eval/length_words_start" in first:
            cells = [_fmt(first.get(f"{k}_start")) for k, _ in HEALTH]
            rows.append(f"| {run.name} | start | " + " | ".join(cells) + " |")
        for m in run.metrics:
            rows.append(f"| {run.name} | after {m.get('iteration')} | " + " | ".join(_fmt(m.get(k)) for k, _ in HEALTH)
                        + " |")
    return rows if len(rows) > 2 else []


def _component_rows(runs: list[Run]) -> list[str]:
    """Per run and iteration, each reward component's mean raw score over the chosen responses (a mix only)."""
    means = {}
    for run in runs:
        for t, responses in sorted(run.responses.items()):
            # fixed pairs (optune dpo, generated_at -1) are labelled: the first response is the chosen one
            labelled = all(r.get("generated_at") == -1 for row in responses for r in row.get("responses", [])
                           if isinstance(r, dict))
            found = component_means(responses, labelled)
            if found:
                means[(run.name, t)] = found
    names = sorted({name for found in means.values() for name in found})
    if not names:
        return []
    rows = ["| run | iteration | " + " | ".join(names) + " |", "|---|---" + "|---" * len(names) + "|"]
    rows += [f"| {run} | {t} | " + " | ".join(_fmt(found.get(n)) for n in names) + " |"
             for (run, t), found in means.items()]
    return rows


def _gain_rows(runs: list[Run]) -> list[str]:
    rows = ["| run | iteration | prompts | regenerated bottom / top | gain bottom half | gain top half | share bottom "
            "| share top | note |", "|---|---|---|---|---|---|---|---|---|"]
    splits = []
    for run in runs:
        for t, s in gain_splits(run).items():
            splits.append(s)
            share_b = f"{100 * s['share_bottom']:.1f}%" if s["share_bottom"] is not None else "–"
            share_t = f"{100 * s['share_top']:.1f}%" if s["share_top"] is not None else "–"
            regen = (f"{s['regenerated_bottom']} / {s['regenerated_top']}" if "regenerated_top" in s else "–")
            note = gain_note(s) if s["share_bottom"] is None else ""
            rows.append(f"| {run.name} | {t} | {s['n_prompts']} | {regen} | {_fmt(s['gain_bottom'])} | "
                        f"{_fmt(s['gain_top'])} | {share_b} | {share_t} | {note} |")
    if reused_top(splits):
        rows += ["", f"With {REUSED_NOTE}: a 100% / 0% split there says how selection works, not where training "
                 "helped."]
    return rows if splits else []


def markdown(runs: list[Run], images: dict[str, Path | None], out_dir: Path) -> str:
    """The report text; `images` maps a caption to a PNG (None: chart skipped for lack of data)."""
    lines = ["# optune report", "", "Runs: " + ", ".join(f"`{r.name}` ({r.path})" for r in runs), "",
             "## Overview", "", *_overview_rows(runs), "",
             "## Time by stage (sum over iterations)", "", *_time_rows(runs), ""]
    health = _health_rows(runs)
    if health:
        lines += ["## Health (held-out responses: is the policy still answering?)", "", *health, ""]
    components = _component_rows(runs)
    if components:
        lines += ["## Reward components (mean raw score of the chosen responses, before weights and standardising)",
                  "", *components, ""]
    gain = _gain_rows(runs)
    if gain:
        lines += ["## Reward gain by half (prompts ranked by chosen reward at t-1, split at the median)", "",
                  *gain, ""]
    lines += ["## Charts", ""]
    for caption, path in images.items():
        if path is None:
            lines.append(f"- {caption}: not drawn (the runs lack the data)")
        else:
            lines += [f"### {caption}", "", f"![{caption}]({path.relative_to(out_dir)})", ""]
    return "\n".join(lines) + "\n"
