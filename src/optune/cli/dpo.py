"""`optune dpo`: DPO or wDPO on a fixed preference set, a thin layer over optune.api (optune.dpo)."""

from __future__ import annotations

import argparse

from optune.cli import run as run_command


def configure(parser: argparse.ArgumentParser) -> None:
    run_command.configure(parser)
    parser.epilog = ("data.train names the preference data: JSON/JSONL {prompt, chosen, rejected} (standard or "
                     "conversational), HH-RLHF transcripts (.jsonl.gz), Parquet/Arrow files, datasets folders or "
                     "hf:NAME[:SPLIT]; several separated by commas. data.max_prompts=N trains on a seeded random "
                     "sample of N pairs.")


def main(args: argparse.Namespace) -> int:
    return run_command.main(args, command="dpo")
