"""JSON records from files: a .json list or .jsonl lines, plain or gzip, each with its file:line.

Prompt sets, preference pairs and stored system outputs all arrive as JSON objects in one of two
containers, so they are read here once. A file whose first non-blank character is "[" is one JSON
list; any other is JSONL, one object per line (blank lines skipped). Gzip is detected from the
bytes, not the name, so `test.jsonl.gz` and a compressed file without the suffix both work.

JSONL is split on "\\n" only: some prompts contain U+2028 or other characters that `str.splitlines`
would treat as line breaks, which would cut a record in two. Every record comes with its location
(`path:line`, the line a list item starts on) so that a caller's error about its content can name
it; every error here is one `UserError` line naming file and line.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from optune.errors import UserError

Located = tuple[str, dict]
"""A record and where it is: ("data/a.jsonl:12", {...})."""

_WS = re.compile(r"[ \t\n\r]*")  # JSON's own white space (str.isspace knows more)


def _past_ws(text: str, pos: int = 0) -> int:
    """The first position at or after `pos` that is not JSON white space."""
    match = _WS.match(text, pos)
    return match.end() if match else pos
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how an unpaired surrogate gets into JSON text
_SURROGATE = re.compile("[\ud800-\udfff]")
_GZIP_MAGIC = b"\x1f\x8b"


def read_text(path: str | Path, kind: str = "file") -> str:
    """The UTF-8 text of a plain or gzip file; `kind` ("prompt file") names it in errors."""
    try:
        data = Path(path).read_bytes()
        if data.startswith(_GZIP_MAGIC):
            data = gzip.decompress(data)
        return data.decode("utf-8")
    except FileNotFoundError:
        raise UserError(f"{kind} {path} does not exist") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {kind} {path}: {err}") from None


def is_json_list(text: str) -> bool:
    """Whether the text is one JSON list rather than JSON lines."""
    return text.startswith("[", _past_ws(text))


def parse_records(text: str, path: str | Path) -> Iterator[Located]:
    """The JSON objects in `text` (read from `path`), in file order, each with its location."""
    if is_json_list(text):
        items, expected = _list_items(text, path), "a JSON object"
    else:
        items, expected = _lines(text, path), "one JSON object per line"
    for where, value in items:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected {expected}, got {_json_type(value)}")
        yield where, value


def read_records(path: str | Path, kind: str = "file") -> Iterator[Located]:
    """The records of a .json list or .jsonl file (plain or gzip), each with its location.

    The file is read at once (a missing one fails here); records are parsed as they are asked for.
    """
    return parse_records(read_text(path, kind), path)


def _lines(text: str, path: str | Path) -> Iterator[tuple[str, Any]]:
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{where}: not valid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:
            raise UserError(f"{where}: {_unreadable(err)}") from None
        yield where, _checked_text(value, line, where)


def _list_items(text: str, path: str | Path) -> Iterator[tuple[str, Any]]:
    """The items of the JSON list that is `text`, each with the line it starts on.

    The decoder reads one item at a time (json.loads of the whole list would lose the lines);
    the checks between items are JSON's grammar for a list.
    """
    decoder = json.JSONDecoder()
    pos = _past_ws(text, _past_ws(text) + 1)  # past "[" and any white space
    line, counted = 1, 0
    while not text.startswith("]", pos):
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
        except (ValueError, RecursionError) as err:
            raise UserError(f"{path}:{line}: {_unreadable(err)}") from None
        yield f"{path}:{line}", _checked_text(value, text[pos:end], f"{path}:{line}")
        pos = _past_ws(text, end)
        if text.startswith(",", pos):
            pos = _past_ws(text, pos + 1)
            if text.startswith("]", pos):
                _syntax_error(text, path, pos, "a list item after ','")
        elif not text.startswith("]", pos):
            _syntax_error(text, path, pos, "',' or ']'")
    rest = _past_ws(text, pos + 1)
    if rest != len(text):
        _syntax_error(text, path, rest, "nothing after the list")


def _unreadable(err: ValueError | RecursionError) -> str:
    """What a JSON value Python cannot hold is: nested deeper than its recursion limit, or an integer longer
    than its limit on digits."""
    if isinstance(err, RecursionError):
        return "JSON nested too deeply to read"
    return f"a JSON value Python cannot read ({str(err).split(';')[0]})"


def _checked_text(value: Any, raw: str, where: str) -> Any:
    """`value`, unless one of its strings holds an unpaired surrogate (a "\\ud800" escape without its pair),
    which no file, tokenizer or UTF-8 encoder can take. Looked for only where the raw text has such an escape."""
    if not _SURROGATE_ESCAPE.search(raw):
        return value
    stack = [value]
    while stack:
        item = stack.pop()
        found = _SURROGATE.search(item) if isinstance(item, str) else None
        if found:
            bad = found.group()
            raise UserError(f"{where}: text with an unpaired surrogate (\\u{ord(bad):04x}), which is not a "
                            "character; fix the file's encoding")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def _syntax_error(text: str, path: str | Path, pos: int, expected: str):
    line = text.count("\n", 0, pos) + 1
    found = "the end of the file" if pos >= len(text) else repr(text[pos])
    raise UserError(f"{path}:{line}: not valid JSON (expected {expected}, found {found})")


_JSON_TYPES = {str: "a string", int: "a number", float: "a number", bool: "true/false", list: "a list",
               type(None): "null"}


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)
