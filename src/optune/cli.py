"""The `optune` command.

Each subcommand lives in its own module, imported only when used, so `optune --help` is instant.
A subcommand module provides `configure(parser)` (add its arguments) and `main(args) -> int`.
User mistakes raise `UserError` and become one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from optune.errors import UserError

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("optune.commands.run", "run online preference tuning (OPTune); no arguments = embedded default"),
    "reward": ("optune.reward_cli", "train (Bradley-Terry) or evaluate a reward model on preference pairs"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="optune", description="Efficient online preference tuning.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if argv and argv[0] == name:
            importlib.import_module(module).configure(p)
    args = parser.parse_args(argv)
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except UserError as err:
        print(f"optune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"optune {args.command}: interrupted; resume with --resume RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
