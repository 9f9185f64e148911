"""Key-level rewrites of a config mapping before it is applied; the tables they read are beside the
dataclasses (optune.config.names: TRL_ALIASES, PATH_KEYS).

- `expand_aliases`: other tools' names for a key (TRL's `beta`, `learning_rate` ...) as the key they mean,
  with their values mapped where the two differ (`optim=adamw_torch` is `train.optimizer=adamw`).
- `resolve_paths`: relative paths in a config FILE made absolute against that file's folder, so the file
  works from any working directory; built-in names (`verifiable:train`, `embedded:...`, `tiny:llama`,
  `hf:NAME`) and absolute or `~` paths stay as they are. Overrides on the command line are not rewritten:
  they are relative to the working directory, as a shell user expects.
- `suggest`: the valid key closest to an unknown one, for "did you mean X?".
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from optune.errors import UserError


@dataclass(frozen=True)
class Alias:
    """Another tool's name for a config key, and how its values read (None: the same)."""

    key: str
    """The dotted optune key it means."""
    value: Callable[[object], object] | None = None
    """Maps the other tool's value to optune's (raising UserError for one with no equivalent)."""


def expand_aliases(data: dict, aliases: dict[str, Alias]) -> dict:
    """`data` (a config mapping) with every top-level alias replaced by the key it means, nested. An alias and
    its key both set is one error naming both."""
    out = {k: v for k, v in data.items() if k not in aliases}
    for name, value in data.items():
        if name not in aliases:
            continue
        alias = aliases[name]
        *parents, leaf = alias.key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"config section {part} must be a mapping, got {node!r}")
        if leaf in node:
            raise UserError(f"{name} is another name for {alias.key}, which is set too; keep one of them")
        node[leaf] = alias.value(value) if alias.value else value
    return out


def alias_override(key: str, value, aliases: dict[str, Alias]) -> tuple[str, object]:
    """One `key=value` override with an alias key replaced by the key it means (its value mapped)."""
    alias = aliases.get(key)
    if alias is None:
        return key, value
    return alias.key, alias.value(value) if alias.value else value


def mapped(name: str, table: dict[str, str], hint: str) -> Callable[[object], object]:
    """A value map for an alias: `table`'s entry for a value, else one error naming `name` and `hint`."""

    def convert(value):
        if isinstance(value, str) and value in table:
            return table[value]
        raise UserError(f"{name}={value!r} has no optune equivalent; {hint}")

    return convert


class PathKind(StrEnum):
    PATH = "path"
    """A file or folder path (made absolute)."""
    PATHS = "paths"
    """One path or several separated by commas (data.train of optune dpo)."""
    EXISTING = "existing"
    """A path only where one exists there (policy.model may also be a hub id such as org/name)."""
    FUNCTION = "function"
    """"path/to/file.py:function" (the file part), or "module:function" (left as it is)."""


_NAME = re.compile(r"[A-Za-z][\w+.-]*:")
"""A built-in name's prefix: verifiable:, embedded:, tiny:, hf: (and a URL's scheme)."""


def _relative(value) -> bool:
    return isinstance(value, str) and bool(value) and not os.path.isabs(value) and not value.startswith("~") \
        and not _NAME.match(value)


def _resolve(value, kind: PathKind, folder: Path):
    if kind == PathKind.PATHS and isinstance(value, str) and "," in value:
        return ",".join(_resolve(part.strip(), PathKind.PATH, folder) for part in value.split(",") if part.strip())
    if kind == PathKind.FUNCTION:
        if not isinstance(value, str) or ":" not in value:
            return value
        file, function = value.rsplit(":", 1)
        return f"{_resolve(file, PathKind.PATH, folder)}:{function}" if file.endswith(".py") else value
    if not _relative(value):
        return value
    if kind == PathKind.EXISTING and not (folder / value).exists():
        return value
    return os.path.normpath(os.path.abspath(folder / value))


def resolve_paths(data: dict, folder: Path, keys: dict[str, PathKind], sections: Iterable[str] = ()) -> dict:
    """A config file's mapping with the relative paths of `keys` ("section.key") made absolute against
    `folder`; `sections` names lists of sections (e.g. "reward.components") whose items take the keys of
    their parent section ("reward.model" applies to each component's model too)."""
    out = dict(data)
    for key, kind in keys.items():
        *parents, leaf = key.split(".")
        node = _section(out, parents)
        if node is not None and leaf in node:
            node[leaf] = _resolve(node[leaf], kind, folder)
    for path in sections:
        *parents, leaf = path.split(".")
        node = _section(out, parents)
        items = node.get(leaf) if node is not None else None
        if node is None or not isinstance(items, list):
            continue
        prefix = ".".join(parents) + "."
        own = {k[len(prefix):]: kind for k, kind in keys.items() if k.startswith(prefix) and "." not in k[len(prefix):]}
        node[leaf] = [resolve_paths(item, folder, own) if isinstance(item, dict) else item for item in items]
    return out


def _section(data: dict, parts: list[str]) -> dict | None:
    """The nested mapping at `parts`, copied on the way down so the caller's mapping is left as it was."""
    node = data
    for part in parts:
        child = node.get(part)
        if not isinstance(child, dict):
            return None
        node[part] = child = dict(child)
        node = child
    return node


def suggest(key: str, valid: Iterable[str]) -> str | None:
    """The valid key closest to `key`: the only one with the same last part (rho -> selection.rho), else
    difflib's closest match over whole keys, else over their last parts; None when nothing is close."""
    valid = list(valid)
    leaf = key.rsplit(".", 1)[-1]
    same = [v for v in valid if v.rsplit(".", 1)[-1] == leaf]
    if len(same) == 1:
        return same[0]
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        return close[0]
    leaves = {v.rsplit(".", 1)[-1]: v for v in valid}
    close = difflib.get_close_matches(leaf, list(leaves), n=1, cutoff=0.75)
    return leaves[close[0]] if close else None
