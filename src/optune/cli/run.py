"""`optune run`: online preference tuning (OPTune), a thin layer over optune.api."""

from __future__ import annotations

import argparse

from optune.config import RunConfig, describe, parse_override
from optune.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="override config values")
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: the embedded default run)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its meaning")


def overrides(texts: list[str]) -> dict:
    """`key.sub=value` arguments as the API's overrides: {"key.sub": value} in order, values parsed as YAML."""
    out: dict = {}
    for text in texts:
        value = parse_override(text)  # checks the text's shape
        key = text.split("=", 1)[0].strip()
        for part in key.split("."):
            value = value[part]
        out[key] = value
    return out


def main(args: argparse.Namespace, command: str = "run") -> int:
    if args.help_config:
        print("\n".join(describe(RunConfig)))
        return 0
    from optune import api

    if args.resume and (args.config or args.overrides):
        raise UserError("--resume takes the run's own config; drop --config and overrides")
    api.tune(command, args.config, overrides(args.overrides), args.resume)
    return 0
