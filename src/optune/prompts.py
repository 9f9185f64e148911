"""Prompt sets: records {"id", "prompt", ...} from the built-in task or from a JSON/JSONL file.

Every check happens here, before any model is loaded: a missing file, an empty set, a record without
prompt text or duplicate ids is one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

from optune.errors import UserError

BUILTIN = {"verifiable:train": ("verifiable", "train"), "verifiable:heldout": ("verifiable", "heldout")}


def _read_file(path: Path) -> list:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"prompt file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read prompt file {path}: {err}") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of records")
        return data
    rows = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{lineno}: not valid JSON ({err.msg})") from None
    return rows


def _normalise(raw, where: str, index: int) -> dict:
    """Accept {"prompt"} or Alpaca/Dolly-style {"instruction", "input"}; ids default to the position."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: record {index} is not a JSON object")
    record = dict(raw)
    text = record.get("prompt")
    if text is None and "instruction" in record:
        text = record["instruction"]
        if record.get("input"):
            text = f"{text}\n\n{record['input']}"
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{where}: record {index} has no prompt text (a non-empty 'prompt' field)")
    record["prompt"] = text
    record["id"] = str(record.get("id", f"{index}"))
    return record


def load_prompts(source: str, limit: int | None = None) -> list[dict]:
    """Load, validate and truncate a prompt set. `source` is a built-in name or a file path."""
    if source in BUILTIN:
        from optune.tasks import verifiable

        records = verifiable.load(BUILTIN[source][1])
        where = source
    elif ":" in source and not Path(source).exists() and source.split(":", 1)[0].isalpha() and "/" not in source:
        raise UserError(f"unknown built-in prompt set {source!r}; built-ins: {', '.join(BUILTIN)}")
    else:
        where = source
        records = [_normalise(r, where, i) for i, r in enumerate(_read_file(Path(source)))]
    if not records:
        raise UserError(f"prompt set {where} is empty")
    seen: set[str] = set()
    for r in records:
        if r["id"] in seen:
            raise UserError(f"prompt set {where} has duplicate prompt id {r['id']!r}")
        seen.add(r["id"])
    return records[:limit] if limit else records
