"""Prompt sets: records {"id", "prompt", ...} from the built-in task or from files in the public formats.

Every public set stores its prompts differently (see shared/data/SOURCES.md); reading them here once
means the loop, the judges and the exporter only ever see one record shape. The files themselves
(JSON list or JSONL, plain or gzip) are read by optune.data.readers. Every check happens here, before any
model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from optune.errors import UserError
from optune.data.readers import Located, is_json_list, parse_records, read_records, read_text

BUILTIN = ("verifiable:train", "verifiable:heldout")

FORMATS = ("lima", "alpaca_eval", "fastchat", "koala", "self_instruct", "wizardlm", "dolly", "prompt")
KIND = "prompt file"


def _field(where: str, record: dict, key: str) -> str:
    value = record.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: no prompt text (a non-empty {key!r} field)")
    return value


def _join(instruction: str, extra: str | None) -> str:
    """Instruction plus its input, joined the way AlpacaEval merged self-instruct tasks."""
    extra = (extra or "").strip()
    return f"{instruction}\n\n{extra}" if extra else instruction


def _read_lima(rows: Iterable[Located]) -> list[dict]:
    return [{"id": f"lima_{i}", "prompt": _field(where, r, "conversations")} for i, (where, r) in enumerate(rows)]


def _read_alpaca_eval(rows: Iterable[Located]) -> list[dict]:
    out = []
    for i, (where, r) in enumerate(rows):
        rec = {"id": f"alpaca_eval_{i}", "prompt": _field(where, r, "instruction")}
        for key in ("dataset", "output", "generator"):
            if key in r:
                rec[key] = r[key]
        out.append(rec)
    return out


def _read_fastchat(rows: Iterable[Located]) -> list[dict]:
    out = []
    for i, (where, r) in enumerate(rows):
        turns = r.get("turns")
        if not isinstance(turns, list) or not turns or not isinstance(turns[0], str):
            raise UserError(f"{where}: no 'turns' list of strings")
        out.append({"id": str(r.get("question_id", i)), "prompt": turns[0], "category": r.get("category")})
    return out


def _read_koala(rows: Iterable[Located]) -> list[dict]:
    return [{"id": str(r.get("id", f"koala_{i}")), "prompt": _field(where, r, "prompt")}
            for i, (where, r) in enumerate(rows)]


def _read_self_instruct(rows: Iterable[Located]) -> list[dict]:
    out = []
    for i, (where, r) in enumerate(rows):
        instances = r.get("instances") or [{}]
        first = instances[0].get("input", "") if isinstance(instances[0], dict) else ""
        out.append({"id": str(r.get("id", i)), "prompt": _join(_field(where, r, "instruction"), first)})
    return out


def _read_wizardlm(rows: Iterable[Located]) -> list[dict]:
    return [{"id": f"wizardlm_{r.get('idx', i)}", "prompt": _field(where, r, "Instruction"),
             "skill": r.get("Skill")} for i, (where, r) in enumerate(rows)]


def _read_dolly(rows: Iterable[Located]) -> list[dict]:
    return [{"id": f"dolly_{i}", "prompt": _join(_field(where, r, "instruction"), r.get("input")),
             "category": r.get("category")} for i, (where, r) in enumerate(rows)]


def _read_prompt(rows: Iterable[Located]) -> list[dict]:
    return [{**r, "id": str(r.get("id", i)), "prompt": _field(where, r, "prompt")}
            for i, (where, r) in enumerate(rows)]


_READERS: dict[str, Callable[[Iterable[Located]], list[dict]]] = {
    "lima": _read_lima, "alpaca_eval": _read_alpaca_eval, "fastchat": _read_fastchat,
    "koala": _read_koala, "self_instruct": _read_self_instruct, "wizardlm": _read_wizardlm,
    "dolly": _read_dolly, "prompt": _read_prompt,
}

# Key that identifies each format in the first record, checked in this order.
_SIGNATURES = (
    ("conversations", "lima"), ("turns", "fastchat"), ("instances", "self_instruct"),
    ("Instruction", "wizardlm"), ("prompt", "prompt"),
)


def detect_format(path: Path) -> str:
    """Guess the format from the first record, so users need not name it for the known sets."""
    text = read_text(path, KIND)
    first = next(parse_records(text, path), None)
    if first is None:
        raise UserError(f"prompt set {path} is empty")
    where, first = first
    if is_json_list(text):
        if "category" in first and "instruction" in first and "generator" not in first:
            return "dolly"
        if "instruction" in first:
            return "alpaca_eval"
        raise UserError(f"{path}: cannot tell the prompt format; pass --format")
    for key, fmt in _SIGNATURES:
        if key in first:
            if fmt == "prompt" and str(first.get("id", "")).startswith("koala"):
                return "koala"
            return fmt
    raise UserError(f"{where}: no prompt text: records need a 'prompt' field or one of the known formats "
                    f"(first record keys: {sorted(first)})")


def read_prompts(path: str | Path, fmt: str = "auto", limit: int | None = None) -> list[dict]:
    """Read a prompt set in any of FORMATS ("auto" detects it); ids are unique strings."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in _READERS:
        raise UserError(f"unknown prompt format {fmt!r}; choose one of {', '.join(FORMATS)} or auto")
    records = _READERS[fmt](read_records(path, KIND))
    if not records:
        raise UserError(f"prompt set {path} is empty")
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise UserError(f"prompt set {path} has duplicate prompt id {dupes[0]!r}")
    return records[:limit] if limit else records


def load_prompts(source: str, limit: int | None = None, fmt: str = "auto") -> list[dict]:
    """A built-in set ("verifiable:train", "verifiable:heldout") or a file in any of FORMATS."""
    if source in BUILTIN:
        from optune.tasks import verifiable

        records = verifiable.load(source.split(":", 1)[1])
        return records[:limit] if limit else records
    if ":" in source and not Path(source).exists() and "/" not in source:
        raise UserError(f"unknown built-in prompt set {source!r}; built-ins: {', '.join(BUILTIN)}")
    return read_prompts(source, fmt, limit)
