"""Prompt sets: `Prompt`s (optune.prompt) from the built-in task, JSON files or tabular data sets.

Every public set stores its prompts differently (see shared/data/SOURCES.md); reading them here once
means the loop, the judges and the exporter only ever see one record. Each format's reader turns a row into
a plain record {"id", "prompt", "history"?, **the set's other fields}; `_checked` makes them `Prompt`s. JSON files
(a list or JSONL, plain or gzip) are read by optune.data.readers; Parquet, Arrow, `datasets` folders and
`hf:NAME[:SPLIT]` by optune.data.tables. A prompt is a string, or a conversation (a list of {"role", "content"}
messages, the conversational shape of TRL and the hub): the turns up to its last user turn become the record's
"history" and "prompt", rendered later with the policy's chat template. Every check happens here,
before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from optune.data import tables
from optune.data.readers import Located, is_json_list, parse_records, read_records, read_text
from optune.errors import UserError
from optune.prompt import Message, Prompt

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


class _BadPrompt(ValueError):
    """A row without a usable prompt; the caller adds where it is."""


def conversation_prompt(messages: list) -> tuple[str, list[dict[str, str]]]:
    """(prompt, history) of a conversation: its last user turn, and the turns before it.

    Turns after the last user turn (a dataset's reference answer) are dropped: the policy answers the prompt.
    """
    for m in messages:
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            raise _BadPrompt("a conversation must be a list of {role, content} messages with text content")
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        raise _BadPrompt("the conversation has no user turn")
    last = users[-1]
    if not messages[last]["content"].strip():
        raise _BadPrompt("the last user turn of the conversation is empty")
    history = [{"role": m["role"], "content": m["content"]} for m in messages[:last]]
    return messages[last]["content"], history


def _prompt_column(row: dict, field: str | None) -> str:
    if field is not None:
        if field not in row:
            raise _BadPrompt(f"no {field!r} field (data.prompt_field); fields: {', '.join(sorted(row))}")
        return field
    for name in ("prompt", "messages"):
        if name in row:
            return name
    raise _BadPrompt(f"no 'prompt' or 'messages' field (fields: {', '.join(sorted(row))}); "
                     f"name the prompt's field with data.prompt_field")


def prompt_record(row: dict, index: int, field: str | None = None, extras: bool = True) -> dict:
    """A record from a row whose `field` (default "prompt", else "messages") is a string or a conversation.

    The id is the row's "id" (else "prompt_id", else its index). `extras`: keep the row's other fields
    (else only its plain values: numbers and strings, not the big nested columns of hub sets).
    """
    column = _prompt_column(row, field)
    value = row[column]
    history: list[Message]
    if isinstance(value, str):
        if not value.strip():
            raise _BadPrompt(f"no prompt text (an empty {column!r} field)")
        prompt, history = value, []
    elif isinstance(value, list) and value:
        prompt, history = conversation_prompt(value)
    else:
        raise _BadPrompt(f"no prompt text: {column!r} must be a non-empty string or a conversation "
                         f"(a list of {{role, content}} messages); got {type(value).__name__}")
    kept = {k: v for k, v in row.items() if k != column and (extras or isinstance(v, (str, int, float, bool)))}
    key = "id" if row.get("id") is not None else "prompt_id" if row.get("prompt_id") is not None else None
    record = {**kept, "id": str(row[key]) if key else str(index), "prompt": prompt}
    if history:
        record["history"] = history
    return record


def _records(rows: Iterable[Located], field: str | None = None, extras: bool = True) -> list[dict]:
    out = []
    for i, (where, row) in enumerate(rows):
        try:
            out.append(prompt_record(row, i, field, extras))
        except _BadPrompt as err:
            raise UserError(f"{where}: {err}") from None
    return out


def _read_prompt(rows: Iterable[Located]) -> list[dict]:
    return _records(rows)


_READERS: dict[str, Callable[[Iterable[Located]], list[dict]]] = {
    "lima": _read_lima, "alpaca_eval": _read_alpaca_eval, "fastchat": _read_fastchat,
    "koala": _read_koala, "self_instruct": _read_self_instruct, "wizardlm": _read_wizardlm,
    "dolly": _read_dolly, "prompt": _read_prompt,
}

# Key that identifies each format in the first record, checked in this order.
_SIGNATURES = (
    ("conversations", "lima"), ("turns", "fastchat"), ("instances", "self_instruct"),
    ("Instruction", "wizardlm"), ("prompt", "prompt"), ("messages", "prompt"),
)


def detect_format(path: Path) -> str:
    """Guess the format from the first record, so users need not name it for the known sets."""
    text = read_text(path, KIND)
    first = next(parse_records(text, path), None)
    if first is None:
        raise UserError(f"prompt set {path} is empty")
    where, record = first
    if is_json_list(text):  # AlpacaEval's and Dolly's sets come as JSON lists; any other shape reads as in JSONL
        if "category" in record and "instruction" in record and "generator" not in record:
            return "dolly"
        if "instruction" in record:
            return "alpaca_eval"
    for key, fmt in _SIGNATURES:
        if key in record:
            if fmt == "prompt" and str(record.get("id", "")).startswith("koala"):
                return "koala"
            return fmt
    raise UserError(f"{where}: no prompt text: records need a 'prompt' or 'messages' field or one of the known "
                    f"formats (first record keys: {sorted(record)}); or name the field with data.prompt_field")


def _checked(records: list[dict], source) -> list[Prompt]:
    """The records as `Prompt`s, once the set is known to be non-empty with unique ids."""
    if not records:
        raise UserError(f"prompt set {source} is empty")
    seen: set[str] = set()
    for r in records:
        if r["id"] in seen:
            raise UserError(f"prompt set {source} has duplicate prompt id {r['id']!r}")
        seen.add(r["id"])
    return [Prompt.from_record(r) for r in records]


def read_prompts(path: str | Path, fmt: str = "auto", limit: int | None = None,
                 field: str | None = None) -> list[Prompt]:
    """Read a JSON prompt set in any of FORMATS ("auto" detects it); ids are unique strings.

    `field` names the prompt's field (a string or a conversation) and reads the file in the generic shape.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prompt file {path} " + ("is a folder, not a file" if path.is_dir() else "does not exist"))
    if field is not None:
        rows = _records(read_records(path, KIND), field)
    else:
        if fmt == "auto":
            fmt = detect_format(path)
        if fmt not in _READERS:
            raise UserError(f"unknown prompt format {fmt!r}; choose one of {', '.join(FORMATS)} or auto")
        rows = _READERS[fmt](read_records(path, KIND))
    records = _checked(rows, path)
    return records[:limit] if limit else records


def read_table_prompts(source: str, limit: int | None = None, field: str | None = None) -> list[Prompt]:
    """The first `limit` prompts of a tabular set (optune.data.tables); only those rows are read."""
    return _checked(_records(tables.read_rows(source, "prompt set", limit), field, extras=False), source)


def load_prompts(source: str, limit: int | None = None, fmt: str = "auto",
                 field: str | None = None) -> list[Prompt]:
    """A built-in set ("verifiable:train", "verifiable:heldout"), a JSON file in any of FORMATS, or a tabular
    set (Parquet, Arrow, a `datasets` folder, hf:NAME[:SPLIT]); `field` is data.prompt_field."""
    if source in BUILTIN:
        from optune.tasks import verifiable

        records = verifiable.load(source.split(":", 1)[1])
        return [Prompt.from_record(r) for r in (records[:limit] if limit else records)]
    if tables.is_table(source):
        return read_table_prompts(source, limit, field)
    if ":" in source and not Path(source).exists() and "/" not in source:
        raise UserError(f"unknown built-in prompt set {source!r}; built-ins: {', '.join(BUILTIN)} "
                        f"(hub data sets are hf:NAME[:SPLIT])")
    return read_prompts(Path(source).expanduser(), fmt, limit, field)
