"""Resuming a run: what may change on resume, and the fingerprint that shows nothing else did.

A run finishes as it started: `optune run --resume DIR` uses DIR/config.yaml. Overrides on resume may change
the deployment-only keys (optune.config.run.DEPLOYMENT_KEYS: a reward server's URL, timeouts, the device ...)
and nothing else; one that would change what the run computes is refused, naming the key. The new values are
written into config.yaml (atomically, once the resumed run has passed its checks), so the file always holds
what the run last ran with.

A run records at creation `RUN/config_digest.json`: the keys that decide what it computes (every key but the
deployment-only ones and output_dir) with their values, and their sha256. A resume whose config.yaml no
longer gives those values (a hand edit) is refused, naming the keys that changed. Runs made before the digest
existed resume as before; keys added to optune since a run was made are not compared.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from optune.config.keys import alias_override
from optune.config.run import (
    DEPLOYMENT_KEYS,
    TRL_ALIASES,
    RunConfig,
    apply_mapping,
    callable_label,
    is_callable_label,
    label_name,
    load_run_config,
    nest_dotted,
    to_dict,
    validate,
)
from optune.endpoint import EndpointError
from optune.errors import RunFailed, UserError
from optune.store import RunStore, WriteError, atomic_write_text, read_json, write_json


def leaves(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"reward": {"function": f}} -> {"reward.function": f}; TRL's names as the keys they mean."""
    out = {}
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            name, value = alias_override(prefix + key, value, TRL_ALIASES)
            out[name] = value
    return out


def flat(cfg: RunConfig) -> dict[str, Any]:
    """Every key of a config with its value as config.yaml holds it; a list of sections item by item
    (reward.components[0].url)."""
    out: dict[str, Any] = {}

    def walk(node, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                for i, item in enumerate(value):
                    walk(item, f"{prefix}{key}[{i}].")
            else:
                out[prefix + key] = value

    walk(to_dict(cfg), "")
    return out


def is_deployment(key: str) -> bool:
    """Whether `key` (dotted, perhaps with an index) is deployment-only; a component's key counts as its
    reward.* key."""
    return re.sub(r"^reward\.components\[\d+\]\.", "reward.", key) in DEPLOYMENT_KEYS


def computing_keys(cfg: RunConfig) -> dict[str, Any]:
    """The keys that decide what a run computes, with their values (output_dir only says where)."""
    return {k: v for k, v in flat(cfg).items() if not is_deployment(k) and k != "output_dir"}


def digest(cfg: RunConfig) -> dict:
    """What RUN/config_digest.json holds: the computing keys and the sha256 of their canonical JSON."""
    keys = computing_keys(cfg)
    text = json.dumps(keys, sort_keys=True, ensure_ascii=False, default=str)
    return {"sha256": hashlib.sha256(text.encode()).hexdigest(), "keys": keys}


def check_digest(store: RunStore, cfg: RunConfig) -> None:
    """config.yaml (loaded as `cfg`) still gives the values the run was created with, else one error naming the
    keys that changed. A run without a digest (made before it existed) passes."""
    if not store.config_digest.is_file():
        return
    recorded = read_json(store.config_digest).get("keys", {})
    now = computing_keys(cfg)
    changed = [k for k in recorded if k in now and not _same(recorded[k], now[k])]
    if changed:
        what = ", ".join(f"{k} ({recorded[k]!r} -> {now[k]!r})" for k in changed)
        raise UserError(f"cannot resume {store.root}: its config.yaml no longer matches what the run computed: "
                        f"{what}; restore {'it' if len(changed) == 1 else 'them'}, or start a new run")


def _same(recorded: Any, now: Any) -> bool:
    """A recorded value equals today's, also where the key's type became a choice with the same meaning (train.bf16
    was a bool before "auto": a run recorded false, its config.yaml now loads as the choice "false")."""
    return now == recorded or (isinstance(recorded, bool) and now == str(recorded).lower())


def resumed_config(store: RunStore, overrides: Mapping[str, Any]) -> RunConfig:
    """The run's own config (checked against its digest) with the deployment-only overrides applied; a reward
    function given again replaces the label config.yaml recorded."""
    cfg = load_run_config(str(store.config))
    check_digest(store, cfg)
    given = leaves(overrides)
    function = given.pop("reward.function", None)
    if function is not None:
        _take_function(cfg, function)
    changed = RunConfig()  # the overrides on a copy, to see what they change
    apply_mapping(changed, to_dict(cfg))
    for key, value in given.items():
        apply_mapping(changed, nest_dotted(key, value))
    before, after = flat(cfg), flat(changed)
    computing = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k) and not is_deployment(k)]
    if computing:
        raise UserError(f"resume takes the run's own config: {', '.join(computing)} would change what the run "
                        f"computes; only deployment-only keys may change on resume ({', '.join(DEPLOYMENT_KEYS)})")
    for key, value in given.items():
        apply_mapping(cfg, nest_dotted(key, value))
    validate(cfg)
    return cfg


def _take_function(cfg: RunConfig, function) -> None:
    """A Python reward function given again for a run whose config.yaml records its label."""
    if not callable(function):
        raise UserError("resume takes the run's own config: a run whose reward was a Python function takes that "
                        "function again as reward.function, and no other value")
    if not is_callable_label(cfg.reward.function):
        raise UserError(f"resume: this run's reward.function is {cfg.reward.function!r} (from its config.yaml), "
                        "not a Python function; pass no reward function")
    if callable_label(function) != cfg.reward.function:
        print(f"optune: note: resuming with {label_name(callable_label(function))}; the run started with "
              f"{label_name(str(cfg.reward.function))}", file=sys.stderr)
    cfg.reward.function = function


def record_deployment(store: RunStore, cfg: RunConfig) -> list[str]:
    """Write the deployment-only values of `cfg` into the run's config.yaml where they changed (atomically);
    returns the keys written. Every other value stays as recorded (a reward function's label included)."""
    recorded = load_run_config(str(store.config))
    old, new = flat(recorded), flat(cfg)
    changed = [k for k in new if is_deployment(k) and old.get(k) != new[k]]
    if not changed or not store.writer:
        return []
    data = to_dict(recorded)
    for key in changed:
        _set(data, key, new[key])
    atomic_write_text(store.config, yaml.safe_dump(data, sort_keys=False))
    return changed


def _set(data: dict, key: str, value) -> None:
    """data["a"]["b"][i]["c"] = value for key "a.b[i].c"."""
    node: Any = data
    parts = key.split(".")
    for part in parts[:-1]:
        match = re.fullmatch(r"(\w+)\[(\d+)\]", part)
        node = node[match.group(1)][int(match.group(2))] if match else node[part]
    node[parts[-1]] = value


def write_digest(store: RunStore, cfg: RunConfig) -> None:
    """RUN/config_digest.json for a new run (RunStore.create's fill step)."""
    write_json(store.config_digest, digest(cfg))


def resume_command(command: str, root: Path, cfg: RunConfig | None = None) -> str:
    """What resumes the run in `root`: `optune run --resume DIR`, or from Python for a run whose reward was a
    Python function (the command line cannot give it)."""
    if cfg is not None and (callable(cfg.reward.function) or is_callable_label(cfg.reward.function)):
        return f"optune.{command}(resume={str(root)!r}, reward={{'function': your_function}}) in Python"
    return f"optune {command} --resume {shlex.quote(str(root))}"


def failed_midway(command: str, err: UserError, root: Path, cfg: RunConfig | None = None) -> RunFailed:
    """A run that stopped midway: one line naming the cause and the exact command that resumes it."""
    cause = err.__cause__ if isinstance(err, WriteError) and isinstance(err.__cause__, WriteError) else err
    moved = " (adding reward.url=NEW_URL if the server moved)" if isinstance(cause, EndpointError) else ""
    return RunFailed(f"{cause}; the run stopped midway with every file it wrote complete: once that is fixed, "
                     f"resume it with: {resume_command(command, root, cfg)}{moved}")
