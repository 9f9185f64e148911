"""Export a system's outputs in AlpacaEval's `model_outputs.json` format.

Why: the AlpacaEval 2 length-controlled win rate (the paper's Table 2) is computed by the
`alpaca_eval` tool, which reads exactly this list of {instruction, output, generator, dataset}.
Writing it lets a user run that tool wherever a judge API is reachable, without our code.
"""

from __future__ import annotations

import json
from pathlib import Path

from optune.prompt import Prompt
from optune.store import atomic_write_text


def write_json_atomic(path: str | Path, value) -> None:
    """JSON through the store's atomic writer: never a half-written file."""
    atomic_write_text(Path(path), json.dumps(value, ensure_ascii=False, indent=2) + "\n")


def alpaca_eval_outputs(prompts: list[Prompt], outputs: list[str], generator: str) -> list[dict]:
    """AlpacaEval rows; `dataset` is kept from AlpacaEval-read prompts, else "optune"."""
    if len(prompts) != len(outputs):
        raise ValueError("one output per prompt is needed")
    return [{"instruction": p.text, "output": out, "generator": generator,
             "dataset": p.fields.get("dataset", "optune")} for p, out in zip(prompts, outputs)]


def export_alpaca_eval(path: str | Path, prompts: list[Prompt], outputs: list[str], generator: str) -> Path:
    write_json_atomic(path, alpaca_eval_outputs(prompts, outputs, generator))
    return Path(path)
