"""`optune run`: online preference tuning (OPTune). Builds the context (optune.context) and runs the loop."""

from __future__ import annotations

import argparse

from optune.config import RunConfig, describe, load_config
from optune.errors import UserError
from optune.store import RunStore


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="override config values")
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: the embedded default run)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its meaning")


def run_config(args: argparse.Namespace, writer: bool = True) -> tuple[RunStore | None, RunConfig]:
    """The store and config of a resumed run (its own config), or no store and the config asked for."""
    if args.resume:
        if args.config or args.overrides:
            raise UserError("--resume takes the run's own config; drop --config and overrides")
        store = RunStore.open_existing(args.resume, writer=writer)
        return store, load_config(str(store.config))
    return None, load_config(args.config, args.overrides)


def main(args: argparse.Namespace) -> int:
    if args.help_config:
        print("\n".join(describe()))
        return 0
    from optune import distributed
    from optune.context import prepare

    dist = distributed.init()
    store, cfg = run_config(args, writer=dist.is_main)
    if finished(store, cfg, dist):
        return 0
    distributed.check(dist, cfg)
    ctx = prepare(cfg, store, dist=dist)
    from optune import loop

    dist.print(f"optune run: {ctx.store.root} | {len(ctx.prompts)} prompts, {len(ctx.heldout)} held-out | "
               f"{cfg.selection.strategy} rho={cfg.selection.rho:g} {cfg.loss.type} | {cfg.iterations} iterations", flush=True)
    finish(ctx, loop.run(ctx))
    return 0


def finished(store: RunStore | None, cfg: RunConfig, dist=None) -> bool:
    """A resumed run with nothing left says so, without loading anything (metrics.jsonl is rebuilt: a kill
    after the last iteration's metrics.json may have cut it short)."""
    if store is None or not store.complete(cfg.iterations):
        return False
    store.rebuild_metrics_log()
    message = f"{store.root} already finished its {cfg.iterations} iteration(s); nothing left to do"
    dist.print(message) if dist is not None else print(message)
    return True


def finish(ctx, results: list[dict]) -> None:
    """Close trackers and print the before/after summary (main process only)."""
    if ctx.tracker is not None:
        ctx.tracker.close()
    first, last = results[0], results[-1]
    if "eval/heldout_reward_start" in first and "eval/heldout_reward" in last:
        ctx.dist.print(f"held-out reward: {first['eval/heldout_reward_start']:.4f} -> {last['eval/heldout_reward']:.4f}")
    ctx.dist.print(f"done: {ctx.store.root} ({last['time/elapsed_s']:.0f}s of generation, scoring and training)")
