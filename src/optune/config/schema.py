"""Config dataclasses from YAML files and `key.sub=value` overrides, and back to plain data.

Works for any config dataclass whose fields carry docstrings (the string literal under each field):
optune.config.run's RunConfig and optune.rewardmodel.config's RewardTrainConfig. Unknown keys are one error that lists
the valid ones; values are checked and coerced to the field's type (a choice, an optune.choices StrEnum, to
one of its members). Every config validates the same way: its numeric ranges in a table of `Range`s beside the
dataclass, checked by `check_ranges`, then its cross-field rules in its module's `validate` function.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import enum
import inspect
import math
import re
import typing
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import yaml

from optune.config.keys import suggest
from optune.errors import UserError

T = typing.TypeVar("T")
E = typing.TypeVar("E", bound=enum.Enum)


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass, its dataclass bases' included: {field name: text}."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if "__dataclass_fields__" in vars(klass):
            docs.update(_own_field_docs(klass))
    return docs


def _own_field_docs(cls: type) -> dict[str, str]:
    """The docstrings of the fields written in `cls`'s own body."""
    tree = ast.parse(inspect.getsource(cls))
    klass = tree.body[0]
    assert isinstance(klass, ast.ClassDef)
    body = klass.body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)):
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def _coerce(value, tp, key: str):
    """Check/convert a YAML value to the field's type; one clear error otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        if callable(value) and any(typing.get_origin(a) is Callable for a in args):
            return value  # a Python function given through optune.run, never from YAML
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return choice(value, tp, key)
    if origin is list:
        if value is None or value == "":
            value = []
        elif isinstance(value, str):  # one item may be given without brackets
            value = [value]
        elif not isinstance(value, list):
            _fail(value, f"a list of {args[0].__name__}", key)
        if isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
            return [_section(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
        return [_coerce(v, args[0], key) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        try:  # YAML 1.1 reads "1e-5" (no dot) as a string
            return float(value) if isinstance(value, str) else _fail(value, tp, key)
        except ValueError:
            pass
    elif tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    _fail(value, tp, key)


def _section(value, cls: type, key: str):
    """One item of a list of config dataclasses (e.g. reward.components): a mapping of its keys over its
    defaults, checked as a section is (unknown keys name `key[i].name` and list the valid ones). An item that
    is already such a dataclass (given from Python) is kept."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        _fail(value, f"a mapping of {cls.__name__} keys", key)
    obj = cls()
    _apply(obj, value, key + ".")
    return obj


def choice(value, kind: type[E], key: str) -> E:
    """`value` as a member of the StrEnum `kind`, else one line naming `key` and the members."""
    if isinstance(value, bool) and str(value).lower() in kind._value2member_map_:
        value = str(value).lower()  # YAML's true/false for a choice that has them (train.bf16)
    if isinstance(value, str) and value in kind._value2member_map_:
        return kind(value)
    raise UserError(f"{key} must be one of {', '.join(m.value for m in kind)}; got {value!r}")


def _fail(value, tp, key: str):
    expected = tp if isinstance(tp, str) else getattr(tp, "__name__", tp)
    raise UserError(f"config key {key}: expected {expected}, got {value!r}")


def apply_mapping(obj, data: dict, prefix: str = "") -> None:
    """Set the keys of a (nested) mapping on a config dataclass, checked and coerced as YAML values are."""
    _apply(obj, data, prefix)


def _apply(obj, data: dict, prefix: str = "", root=None) -> None:
    if not isinstance(data, dict):
        raise UserError(f"config section {prefix.rstrip('.') or 'root'} must be a mapping, got {data!r}")
    root = obj if root is None else root
    hints = typing.get_type_hints(type(obj))
    for key, value in data.items():
        full = prefix + str(key)
        item = _list_item(obj, str(key), full)
        if item is not None:  # "components[1]": one item of a list of sections, from a key.sub[i].x=v override
            _apply(item, value, full + ".")
            continue
        if key not in hints:
            valid = ", ".join(prefix + f.name for f in dataclasses.fields(obj))
            close = suggest(full, [prefix + k for k in leaf_keys(obj)] if root is obj else leaf_keys(root))
            hint = f" (did you mean {close}?)" if close else ""
            raise UserError(f"unknown config key {full!r}{hint}; valid keys here: {valid}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _apply(current, value, full + ".", root)
        else:
            setattr(obj, key, _coerce(value, hints[key], full))


def leaf_keys(obj, prefix: str = "") -> list[str]:
    """Every dotted key of the config dataclass `obj` that holds a value (sections walked into)."""
    out = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        out += leaf_keys(value, f"{prefix}{f.name}.") if dataclasses.is_dataclass(value) else [prefix + f.name]
    return out


def _list_item(obj, key: str, full: str):
    """The section `key` = "name[i]" names in obj's list of sections (e.g. reward.components[1]), or None
    where `key` has no index; an index past the list's end is one error. The list and that item are copied
    first, so a config copied shallowly (optune.api.build_config) does not change its original's."""
    match = re.fullmatch(r"(\w+)\[(\d+)\]", key)
    hint = typing.get_type_hints(type(obj)).get(match.group(1)) if match else None
    if match is None or not (typing.get_origin(hint) is list and dataclasses.is_dataclass(typing.get_args(hint)[0])):
        return None
    items, index = getattr(obj, match.group(1)), int(match.group(2))
    if index >= len(items):
        raise UserError(f"config key {full}: {full.rsplit('[', 1)[0]} has {len(items)} items (indices from 0)")
    items = list(items)
    items[index] = copy.copy(items[index])
    setattr(obj, match.group(1), items)
    return items[index]


def nest_dotted(dotted: str, value) -> dict:
    """"a.b.c", v -> {"a": {"b": {"c": v}}}."""
    out: dict = {}
    node = out
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def parse_override(text: str) -> dict:
    """"loss.beta1=0.2" -> {"loss": {"beta1": 0.2}}; the value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override {text!r}: expected key=value (key.sub=value for a nested key)")
    key, raw = text.split("=", 1)
    if not key.strip():
        raise UserError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return nest_dotted(key.strip(), value)


def read_yaml(path: str) -> dict:
    """The mapping in a YAML config file; a missing, unreadable or non-mapping file is one clear error."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"config file {path} " + ("is a folder, not a file" if file.is_dir() else "does not exist"))
    try:
        data = yaml.load(file.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except yaml.MarkedYAMLError as err:
        raise UserError(f"config file {path}: {_yaml_problem(err)}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise UserError(f"cannot read config file {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


class _UniqueKeyLoader(yaml.SafeLoader):
    """The safe loader, refusing a key given twice in one mapping: PyYAML keeps the last silently, so a second
    `lr:` further down a file would win unnoticed. Keys a merge (`<<: *base`) brings may still be overridden."""

    def construct_mapping(self, node, deep: bool = False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    mark = first.setdefault(key, key_node.start_mark)
                except TypeError:  # an unhashable key: the base loader says what is wrong with it
                    continue
                if mark is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first given on line {mark.line + 1})",
                        key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(err: yaml.MarkedYAMLError) -> str:
    """"line 3, column 7: mapping values are not allowed here" (1-based, where the parser stopped)."""
    mark = err.problem_mark or err.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = ": ".join(p for p in (err.context, err.problem) if p) or "malformed YAML"
    return f"{where}{what}"


def load_dataclass(cls: type[T], path: str | None = None, overrides: Iterable[str] = ()) -> T:
    """Defaults of the config dataclass `cls`, then the YAML file, then the `key.sub=value` overrides.

    Unknown keys (listing the valid ones) and mistyped values are errors; range checks are the caller's.
    """
    obj = cls()
    if path is not None:
        _apply(obj, read_yaml(path))
    for text in overrides:
        _apply(obj, parse_override(text))
    return obj


CALLABLE_PREFIX = "<python callable "


def callable_label(fn) -> str:
    """What config.yaml records for a Python function it cannot hold: "<python callable module.qualname>"."""
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    return f"{CALLABLE_PREFIX}{getattr(fn, '__module__', None) or '?'}.{name}>"


def is_callable_label(value) -> bool:
    return isinstance(value, str) and value.startswith(CALLABLE_PREFIX) and value.endswith(">")


def label_name(label: str) -> str:
    """"<python callable mod.f>" -> "mod.f"."""
    return label[len(CALLABLE_PREFIX):-1]


def to_dict(cfg) -> typing.Any:
    """A config dataclass as plain data (what its YAML file holds); Python functions become their labels.

    Not dataclasses.asdict: that deep-copies every value, and a callable object may hold a whole model.
    """
    if isinstance(cfg, enum.Enum):
        return cfg.value
    if callable(cfg):
        return callable_label(cfg)
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def describe(root: type) -> list[str]:
    """Every key of the config dataclass `root` with its default and docstring, for `--help-config`."""
    lines = []

    def walk(obj, prefix):
        docs = field_docs(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                walk(value, prefix + f.name + ".")
            else:
                hint = typing.get_type_hints(type(obj))[f.name]
                choices = f" (one of: {', '.join(m.value for m in hint)})" if isinstance(hint, type) and \
                    issubclass(hint, enum.Enum) else ""
                lines.append(f"{prefix}{f.name} = {to_dict(value)!r}{choices}\n    {docs.get(f.name, '')}")

    walk(root(), "")
    return lines


@dataclasses.dataclass(frozen=True)
class Range:
    """The values a numeric config key may take: low and high bounds (open or closed), and whether null is
    allowed (an optional key)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    nullable: bool = False

    def contains(self, value) -> bool:
        if value is None:
            return self.nullable
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return above and below

    def __str__(self) -> str:
        low, high = _bound(self.low), _bound(self.high)
        if self.high is None:
            text = f"{'>' if self.low_open else '>='} {low}"
        elif self.low is None:
            text = f"{'<' if self.high_open else '<='} {high}"
        else:
            text = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        return text + (" or null" if self.nullable else "")


def _bound(value: float | None) -> str:
    """A bound as written: 4294967295 for an integer one, not 4.29497e+09."""
    return str(value) if isinstance(value, int) or value is None else f"{value:g}"


def check_ranges(cfg, ranges: dict[str, Range], prefix: str = "") -> None:
    """Every key of `ranges` ("section.key", read from the config dataclass `cfg`) within its range: else one
    line naming the key (after `prefix`), its range and the value."""
    for key, allowed in ranges.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if not allowed.contains(value):
            raise UserError(f"{prefix}{key} must be {allowed}; got {value}")
