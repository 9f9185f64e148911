"""The `optune` command: one module per subcommand under optune.cli.

Each subcommand lives in its own module, imported only when used, so `optune --help` is instant.
A subcommand module provides `configure(parser)` (add its arguments) and `main(args) -> int`.
User mistakes raise `UserError` and become one line on stderr; `optune --debug ...` (or OPTUNE_DEBUG=1)
prints the traceback behind it too, e.g. of an exception in a user's reward function. SIGTERM is handled as
Ctrl-C is: the command stops where it is, its temp files are removed, its locks released, and a run says how
to resume. Directory locks a command took (optune.store.lock) are released when it ends, however it ends.

Exit status: 0 done; 2 usage error (a `UserError`: nothing was started or changed); 3 a run failed midway
and can be resumed (`RunFailed`: a server failed after its retries, the disk refused a write; the line names
the command that resumes it); 130 interrupted (SIGINT, Ctrl-C); 143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import traceback

from optune.errors import UserError
from optune.store.lock import release_all

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("optune.cli.run", "run online preference tuning (OPTune); no arguments = embedded default"),
    "dpo": ("optune.cli.dpo", "offline DPO / wDPO on a fixed preference set (the paper's offline baseline)"),
    "reward": ("optune.cli.reward", "train (Bradley-Terry) or evaluate a reward model on preference pairs"),
    "eval": ("optune.cli.eval", "pairwise evaluation (LLM or reward judge, Win Score) against a baseline"),
    "ifeval": ("optune.cli.ifeval", "IFEval accuracies of checkpoints or stored responses, paired differences"),
    "bench": ("optune.cli.bench", "lm-evaluation-harness benchmarks of a checkpoint (paper Table 5 settings)"),
    "export": ("optune.cli.export", "a run's preference pairs in TRL's format (Parquet, JSONL) and a model card"),
    "report": ("optune.cli.report", "PNG plots and a Markdown summary of one or more run directories"),
    "study": ("optune.cli.study", "blind pairwise human study: create, serve the rating page, results (Table 4)"),
}


def _quiet_libraries() -> None:
    """Our own progress bars and summaries are the output; silence the libraries' per-file bars and logs.

    Through the environment (read when transformers and huggingface_hub are first imported, which no command
    has done yet), so commands that never load a model (study, report) do not pay for importing transformers."""
    for key, value in (("HF_HUB_DISABLE_TELEMETRY", "1"), ("TOKENIZERS_PARALLELISM", "false"),
                       ("HF_HUB_DISABLE_PROGRESS_BARS", "1"), ("TRANSFORMERS_VERBOSITY", "error")):
        os.environ.setdefault(key, value)


class Parser(argparse.ArgumentParser):
    """argparse, with its errors as optune's: one line (no usage block) naming the command's --help; exit 2.
    Subcommands' parsers are of the same class (add_subparsers makes them so)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt, so the same cleanup runs."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = Parser(prog="optune", description="Efficient online preference tuning.")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback behind an error (also: environment variable OPTUNE_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    command = next((a for a in argv if not a.startswith("-")), None)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if command == name:
            importlib.import_module(module).configure(p)
    args = parser.parse_args(argv)
    _quiet_libraries()
    previous = _on_sigterm(_terminate)
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except UserError as err:
        if args.debug or os.environ.get("OPTUNE_DEBUG", "") not in ("", "0"):
            traceback.print_exception(err)
        print(f"optune {args.command}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        how = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
        resume = getattr(err, "resume_command", None)
        print(f"optune {args.command}: {how}" + (f"; resume with: {resume}" if resume else ""), file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    finally:
        release_all()
        _on_sigterm(previous)


def _on_sigterm(handler):
    """Install a SIGTERM handler (main thread only: elsewhere signals cannot be handled); returns the old one."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)

