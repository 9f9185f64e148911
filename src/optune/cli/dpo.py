"""`optune dpo`: DPO or wDPO on a fixed preference set, with the same config, run directory and resume as run."""

from __future__ import annotations

import argparse
import dataclasses
import time

from optune.cli import run as run_command
from optune.config import describe
from optune.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    run_command.configure(parser)
    parser.epilog = ("data.train names the preference data: JSON/JSONL {prompt, chosen, rejected}, HH-RLHF "
                     "transcripts (.jsonl.gz) or hf:NAME[:SPLIT]; several separated by commas. "
                     "data.max_prompts=N trains on a seeded random sample of N pairs.")


def main(args: argparse.Namespace) -> int:
    from optune.context import preflight, prepare

    if args.help_config:
        print("\n".join(describe()))
        return 0
    store, cfg = run_command.run_config(args)
    if store is None:
        if cfg.init_from:
            raise UserError("init_from is for online runs; optune dpo starts from policy.model")
        if cfg.output_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            cfg = dataclasses.replace(cfg, output_dir=f"runs/{stamp}-offline-{cfg.loss.type}")
    # one pass over the fixed set (train.epochs times), the starting policy as the reference
    cfg = dataclasses.replace(cfg, iterations=1)
    if run_command.finished(store, cfg):
        return 0
    if cfg.data.train.startswith("verifiable:"):
        raise UserError("optune dpo needs preference pairs in data.train (the built-in task has prompts only)")
    preflight(cfg, store)  # before the (possibly large) preference files are read
    from optune import loop
    from optune.data.preferences import read_preferences
    from optune.pairs import offline

    data = read_preferences([s.strip() for s in cfg.data.train.split(",") if s.strip()])
    print(f"optune dpo: {data.summary()}", flush=True)
    ctx = prepare(cfg, store, prompts=offline.prompt_records(data, cfg.data.max_prompts, cfg.seed),
                  source=offline.OfflineSource())
    print(f"optune dpo: {ctx.store.root} | {len(ctx.prompts)} pairs, {len(ctx.heldout)} held-out | "
          f"{cfg.loss.type}, {cfg.train.epochs} epochs", flush=True)
    results = loop.run(ctx)
    run_command.finish(ctx, results)
    return 0
