"""Damaged files: what is wrong with one in a few words (`damage`), the one stderr line that says so (`warn`), and
what a batch file's rows must hold (`batch_rows_problem`), so a resumed run redoes a batch instead of reading it."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from optune.store.atomic import read_json, read_jsonl


def warn(line: str) -> None:
    """One line on stderr, on a line of its own even while a progress bar is drawn there (tqdm clears the bar,
    writes the line and draws the bar again)."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
    sys.stderr.flush()


def damage(err: BaseException) -> str:
    """What is wrong with a file that failed to read, in a few words."""
    if isinstance(err, json.JSONDecodeError):
        return f"not valid JSON at line {err.lineno}"
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__
    if isinstance(err, KeyError):
        return f"no {err.args[0]!r} in it"
    return str(err).splitlines()[0][:200] if str(err) else type(err).__name__


def _read_object(path: Path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def _read_prompt_rows(path: Path) -> list[dict]:
    """RUN/prompts.jsonl's rows, each an object with an id and a prompt (raises where one is not)."""
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not (isinstance(row, dict) and "id" in row and "prompt" in row):
            raise ValueError(f"line {i} is not a prompt record")
    return rows


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pair_of(value, kind) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(kind(v) for v in value)


def _sample(value) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("text"), str) and isinstance(value.get("ids"), list)
            and isinstance(value.get("eos"), bool))


BATCH_ROWS: dict[str, dict[str, Callable[[object], bool]]] = {
    "gen": {"samples": lambda v: _pair_of(v, _sample)},
    "score": {"rewards": lambda v: _pair_of(v, _number)},
    "heldout": {"response": lambda v: isinstance(v, str), "eos": lambda v: isinstance(v, bool), "reward": _number},
}
"""What each row of a batch folder of the layout holds besides its prompt_id (gen: the two samples, score: their
rewards, heldout and heldout_start: the greedy answer and its reward)."""
BATCH_ROWS["heldout_start"] = BATCH_ROWS["heldout"]


def _item_id(item) -> str | None:
    """The prompt id of a batch's item where it has one (a Prompt, or a gen row being scored)."""
    if isinstance(item, dict):
        return item.get("prompt_id")
    return getattr(item, "id", None)


def batch_rows_problem(folder: str, rows: list, items: list | None = None) -> str | None:
    """What is wrong with a batch file's rows that read as JSON: not objects, without what their folder's rows
    hold (`BATCH_ROWS`), or for other prompts than the batch's `items`; None if nothing."""
    checks = BATCH_ROWS.get(folder)
    ids = [_item_id(x) for x in items] if items is not None else [None] * len(rows)
    for i, (row, expected) in enumerate(zip(rows, ids), 1):
        if not isinstance(row, dict):
            return f"line {i} is not a JSON object"
        if checks is None:
            continue
        if not isinstance(row.get("prompt_id"), str):
            return f"line {i} has no prompt_id"
        if expected is not None and row["prompt_id"] != expected:
            return f"line {i} is for prompt {row['prompt_id']!r}, not {expected!r}"
        for key, fits in checks.items():
            if not fits(row.get(key)):
                return f"line {i} has no {key!r}" if key not in row else f"line {i}'s {key!r} is not one"
    return None
