"""Summaries of a study: the paper's Table 4, agreement between raters, CSV export.

A rating is stored as what the rater clicked (A, B, tie); since A/B order differs per rater,
it is turned into an outcome for the comparison's first system (win / loss / tie) before
anything is counted. Agreement is computed on those outcomes, per comparison, over the items
that at least two people rated: mean pairwise percent agreement and Fleiss' kappa (the form
that allows a different number of raters per item).
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from pathlib import Path

from optune.store import atomic_write

OUTCOMES = ("win", "loss", "tie")
EXPORT_FIELDS = ["comparison", "first", "second", "prompt_id", "prompt", "rater", "shown_as_a", "shown_as_b",
                 "choice", "preferred", "outcome_for_first", "rated_at"]
TABLE_FIELDS = ["comparison", "first", "second", "win_pct", "loss_pct", "tie_pct", "ratings", "assigned", "items",
                "items_rated", "ratings_per_item", "agreement_pct", "fleiss_kappa", "items_for_agreement"]


def outcome(first_is_a: bool, choice: str) -> str:
    """The first system's result for one rating."""
    if choice == "tie":
        return "tie"
    return "win" if (choice == "A") == bool(first_is_a) else "loss"


def agreement(counts: list[list[int]]) -> tuple[float | None, float | None, int]:
    """(percent agreement, Fleiss' kappa, items used) from per-item category counts.

    Items with fewer than two ratings carry no agreement information and are skipped.
    Percent agreement is the share of agreeing rater pairs, averaged over items (Fleiss' P-bar).
    Kappa is None when chance agreement is 1 (every rating in one category), where it is undefined.
    """
    used = [row for row in counts if sum(row) >= 2]
    if not used:
        return None, None, 0
    per_item = [(sum(c * c for c in row) - sum(row)) / (sum(row) * (sum(row) - 1)) for row in used]
    p_bar = sum(per_item) / len(per_item)
    total = sum(sum(row) for row in used)
    p_e = sum((sum(row[j] for row in used) / total) ** 2 for j in range(len(used[0])))
    kappa = None if p_e >= 1.0 else (p_bar - p_e) / (1.0 - p_e)
    return p_bar, kappa, len(used)


def summarise(comparisons: list, ratings: list) -> list[dict]:
    """One Table-4 row per comparison from `storage.comparison_rows` and `storage.rating_rows`."""
    by_comparison: dict[int, list] = defaultdict(list)
    for r in ratings:
        by_comparison[r["comparison"]].append(r)
    table = []
    for comp in comparisons:
        rows = by_comparison.get(comp["id"], [])
        totals = Counter(outcome(r["first_is_a"], r["choice"]) for r in rows)
        per_item: dict[int, Counter] = defaultdict(Counter)
        for r in rows:
            per_item[r["item"]][outcome(r["first_is_a"], r["choice"])] += 1
        pct, kappa, n_agree = agreement([[c[o] for o in OUTCOMES] for c in per_item.values()])
        n = len(rows)
        table.append({
            "comparison": f"{comp['first']} vs {comp['second']}",
            "first": comp["first"],
            "second": comp["second"],
            **{f"{o}_pct": (100.0 * totals[o] / n if n else None) for o in OUTCOMES},
            "ratings": n,
            "assigned": comp["assigned"],
            "items": comp["items"],
            "items_rated": len(per_item),
            "ratings_per_item": (n / len(per_item) if per_item else None),
            "agreement_pct": (100.0 * pct if pct is not None else None),
            "fleiss_kappa": kappa,
            "items_for_agreement": n_agree,
        })
    return table


def _fmt(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_table(table: list[dict]) -> str:
    """Plain-text Table 4 plus agreement, wide enough for long system names."""
    header = ["Comparison", "Win (%)", "Loss (%)", "Tie (%)", "Ratings", "Per item", "Agree (%)", "Fleiss k"]
    lines = [[
        row["comparison"], _fmt(row["win_pct"]), _fmt(row["loss_pct"]), _fmt(row["tie_pct"]),
        f"{row['ratings']}/{row['assigned']}", _fmt(row["ratings_per_item"]),
        _fmt(row["agreement_pct"]), _fmt(row["fleiss_kappa"], 3),
    ] for row in table]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    out = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for line in lines:
        out.append("  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(line, widths))))
    return "\n".join(out)


def export_rows(ratings: list) -> list[dict]:
    """One CSV row per rating, with the hidden order revealed (for the organiser, not the raters)."""
    out = []
    for r in ratings:
        shown_a, shown_b = (r["first"], r["second"]) if r["first_is_a"] else (r["second"], r["first"])
        result = outcome(r["first_is_a"], r["choice"])
        out.append({
            "comparison": f"{r['first']} vs {r['second']}",
            "first": r["first"], "second": r["second"],
            "prompt_id": r["prompt_id"], "prompt": r["prompt"], "rater": r["rater"],
            "shown_as_a": shown_a, "shown_as_b": shown_b, "choice": r["choice"],
            "preferred": {"A": shown_a, "B": shown_b}.get(r["choice"], "tie"),
            "outcome_for_first": result, "rated_at": r["rated_at"],
        })
    return out


def write_csv(path: str | Path, rows: list[dict], fieldnames: list[str]) -> None:
    """Write a CSV atomically (the store's writer: temp file, fsync, rename), so a reader never sees half a file."""
    buf = io.StringIO(newline="")
    writer = csv.DictWriter(buf, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    atomic_write(Path(path), lambda fh: fh.write(data))
