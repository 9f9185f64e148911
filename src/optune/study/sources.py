"""Read one system's responses and match systems by prompt text.

Three formats are accepted because that is what the evaluation side writes and what public
leaderboards publish: AlpacaEval `model_outputs.json` (a JSON list of
`{"instruction", "output", "generator"}`), JSONL with `{"prompt", "response"}` per line, and
`optune eval`'s own `responses_<side>.json` (`{"source", "rows": [{"id", "prompt", "response"}]}`).
Either key spelling is accepted in either format. Prompts are matched on their text after
normalising line endings and outer whitespace, since exporters differ in exactly those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from optune.data.readers import parse_records, read_text
from optune.errors import UserError
from optune.eval.systems import read_saved

PROMPT_KEYS = ("instruction", "prompt")
RESPONSE_KEYS = ("output", "response")


@dataclass
class SystemOutputs:
    """One system's responses, keyed by normalised prompt text, in file order."""

    name: str
    source: str
    responses: dict[str, str]
    duplicates: int = 0


def normalise_prompt(text: str) -> str:
    """The key two files must share for their responses to be compared."""
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def _field(record: dict, keys: tuple[str, ...], where: str) -> str:
    for key in keys:
        if key in record:
            value = record[key]
            if not isinstance(value, str):
                raise UserError(f"{where}: field {key!r} must be a string")
            return value
    raise UserError(f"{where}: needs one of the fields {', '.join(keys)}")


def _records(path: Path) -> Iterable[tuple[str, dict]]:
    """The records of any of the three formats, each with where it is (file:line or file: rows[i])."""
    text = read_text(path, "responses file")
    saved = read_saved(text)
    if saved is None:  # JSONL (or AlpacaEval's list), whose parser names a bad line
        return parse_records(text, path)
    for i, row in enumerate(saved.rows):
        if not isinstance(row, dict):
            raise UserError(f"{path}: rows[{i}] must be an object with prompt and response")
    return [(f"{path}: rows[{i}]", row) for i, row in enumerate(saved.rows)]


def read_system(path: str | Path, name: str | None = None) -> SystemOutputs:
    """Load one system's responses; the name defaults to the file's single `generator` or its stem.

    A prompt that appears twice keeps its first response (counted in `duplicates`), so a file
    with repeated prompts still yields one unambiguous item per prompt.
    """
    path = Path(path)
    responses: dict[str, str] = {}
    generators: set[str] = set()
    duplicates = 0
    for where, record in _records(path):
        prompt = normalise_prompt(_field(record, PROMPT_KEYS, where))
        if not prompt:
            raise UserError(f"{where}: empty prompt")
        response = _field(record, RESPONSE_KEYS, where)
        if isinstance(record.get("generator"), str):
            generators.add(record["generator"])
        if prompt in responses:
            duplicates += 1
            continue
        responses[prompt] = response
    if not responses:
        raise UserError(f"{path}: no responses found")
    if name is None:
        name = generators.pop() if len(generators) == 1 else path.stem
    return SystemOutputs(name=name, source=str(path), responses=responses, duplicates=duplicates)


def parse_system_arg(arg: str) -> tuple[str | None, str]:
    """Split `NAME=PATH` (or a bare `PATH`) as given to `--system`."""
    if "=" in arg:
        name, path = arg.split("=", 1)
        if not name.strip():
            raise UserError(f"--system {arg!r}: empty name before '='")
        return name.strip(), path
    return None, arg


def common_prompts(systems: list[SystemOutputs]) -> list[str]:
    """Prompts every given system answered, in the first system's file order."""
    first, *rest = systems
    return [p for p in first.responses if all(p in s.responses for s in rest)]
