"""The two systems an evaluation compares: responses generated from a checkpoint, or stored outputs.

Generated responses are saved next to the results with the settings that produced them and
reused when a rerun asks for the same thing, so resuming a judge run does not resample answers
(which would also defeat the judge cache).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from optune.data.readers import is_json_list, parse_records, read_text
from optune.errors import UserError
from optune.eval.export import write_json_atomic
from optune.prompt import Prompt
from optune.store import damage


def read_outputs(path: str | Path, prompts: list[Prompt]) -> list[str]:
    """Stored answers for `prompts`: AlpacaEval json (matched by instruction) or JSONL (matched by id).

    JSONL rows need "id" or "prompt_id", and "response" or "output".
    """
    path = Path(path)
    text = read_text(path, "outputs file")
    rows = [r for _, r in parse_records(text, path)]
    if is_json_list(text):
        by_key = {r.get("instruction"): r.get("output") for r in rows}
        keys = [p.text for p in prompts]
    else:
        by_key = {str(r.get("id", r.get("prompt_id"))): r.get("response", r.get("output")) for r in rows}
        keys = [p.id for p in prompts]
    texts = {k: v for k, v in by_key.items() if isinstance(v, str)}
    missing = [k for k in keys if k not in texts]
    if missing:
        raise UserError(f"{path}: no output for {len(missing)} of {len(keys)} prompts "
                        f"(first: {str(missing[0])[:60]!r})")
    return [texts[k] for k in keys]


@dataclass
class SavedResponses:
    """`optune eval`'s responses_<side>.json: the model and settings that produced the rows, and the rows
    ({"id", "prompt", "response"} each, unchecked: readers check what they use)."""

    source: dict | None
    """The model and generation settings that produced the rows (None where the file names none: never reused)."""
    rows: list


def read_saved(text: str) -> SavedResponses | None:
    """`text` as a responses_<side>.json (one JSON object with a "rows" list), or None when it is not one."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        saved = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(saved, dict) and isinstance(saved.get("rows"), list)):
        return None
    source = saved.get("source")
    return SavedResponses(source if isinstance(source, dict) else None, saved["rows"])


def weights_fingerprint(model_dir: Path) -> str:
    """Names, sizes and modification times of the weight files: a retrained checkpoint at the same
    path gets new responses instead of the stale saved ones."""
    files = sorted(p for p in model_dir.glob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".json"))
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(stats).encode()).hexdigest()[:16]


def generated_outputs(out_path: Path, source: dict, prompts: list[Prompt],
                      make_generator: Callable[[], Callable[[list[str]], list[str]]]) -> list[str]:
    """Responses from `make_generator()`, cached in `out_path` under `source` (model + settings); a saved file
    for other settings, other prompts or of another shape is regenerated and replaced."""
    ids = [p.id for p in prompts]
    saved, problem = None, None
    if out_path.is_file():
        try:
            saved = read_saved(out_path.read_text(encoding="utf-8"))
            problem = None if saved is not None else "not a saved responses file"
        except (OSError, ValueError) as err:  # ValueError: not UTF-8
            problem = damage(err)
    if saved is not None and saved.source == source:
        if (len(saved.rows) == len(ids) and all(isinstance(r, dict) and r.get("id") == i
                                                and isinstance(r.get("response"), str)
                                                for r, i in zip(saved.rows, ids))):
            return [r["response"] for r in saved.rows]
        if len(saved.rows) == len(ids):  # the same model, settings and number of prompts: rows that do not read
            problem = "rows that are not this prompt set's responses"
    if problem is not None:  # for other settings or prompts it is simply replaced, as asked
        print(f"{out_path} is damaged ({problem}): generating the responses again (the same seed and settings)",
              file=sys.stderr, flush=True)
    responses = make_generator()([p.text for p in prompts])
    if len(responses) != len(prompts):
        raise UserError(f"generator returned {len(responses)} responses for {len(prompts)} prompts")
    rows = [{"id": p.id, "prompt": p.text, "response": resp} for p, resp in zip(prompts, responses)]
    write_json_atomic(out_path, {"source": source, "rows": rows})
    return responses
