"""`optune run`: online preference tuning (OPTune), a thin layer over optune.api."""

from __future__ import annotations

import argparse

from optune.config.run import DEPLOYMENT_KEYS, TRL_ALIASES, RunConfig, describe, parse_override
from optune.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="override config values")
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: the embedded default run); "
                        "relative paths in it are relative to its folder")
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run; key=value overrides may "
                        f"change only deployment-only keys ({', '.join(DEPLOYMENT_KEYS)})")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its meaning")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML and exit (nothing is loaded or created)")


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


def help_config() -> str:
    """Every key with its default and meaning, then the other tools' names accepted for them."""
    aliases = [f"  {name} -> {alias.key}" for name, alias in TRL_ALIASES.items()]
    return "\n".join([*describe(RunConfig), "", "TRL's names, accepted for the keys they mean (optim=adamw_torch "
                      "is adamw, lr_scheduler_type=constant_with_warmup is constant; seed is seed):", *aliases])


def print_config(command: str, args: argparse.Namespace) -> None:
    """The config a run would use (a resumed one's with its overrides), as YAML; nothing loaded or locked."""
    import yaml

    from optune import api
    from optune.config.run import to_dict
    from optune.runner.resume import resumed_config
    from optune.store import RunStore

    if args.resume:
        cfg = resumed_config(RunStore.open_existing(args.resume, writer=False), overrides(args.overrides))
    else:
        cfg = api.build_config(args.config, overrides(args.overrides), command)
    if command == "dpo":
        cfg = api.offline_config(cfg, None if not args.resume else RunStore(args.resume, writer=False))
    print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")


def main(args: argparse.Namespace, command: str = "run") -> int:
    if args.help_config:
        print(help_config())
        return 0
    if args.resume and args.config:
        raise UserError("--resume takes the run's own config; drop --config (key=value overrides may change its "
                        "deployment-only keys)")
    if args.print_config:
        print_config(command, args)
        return 0
    from optune import api

    api.tune(command, args.config, overrides(args.overrides), args.resume)
    return 0
