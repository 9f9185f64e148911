"""`optune run`: validate everything cheap first, then build the context and hand it to the loop."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import time
from pathlib import Path

import yaml

from optune import __version__
from optune.config import RunConfig, describe, load_config, to_dict
from optune.errors import UserError
from optune.store import RunStore, atomic_save_dir, read_json


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="override config values")
    parser.add_argument("--config", "-c", metavar="FILE", help="YAML config (default: the embedded default run)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its meaning")


def versions() -> dict:
    import accelerate
    import torch
    import transformers

    return {"optune": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "platform": platform.platform()}


def resolve_policy(spec: str) -> str:
    from optune.policy import cache_root, resolve_model_path

    if spec == "tiny:llama":
        from optune.tiny import build_tiny_policy

        out = cache_root() / "models" / "tiny-llama"
        if not (out / "config.json").is_file():
            atomic_save_dir(out, build_tiny_policy)
        return str(out)
    return resolve_model_path(spec)


def default_output_dir(cfg: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.selection.strategy}-rho{cfg.selection.rho:g}-{cfg.loss.type}"


# iteration 0 samples, scores and trains pi_0 -> pi_1, so everything but selection must match to share it
SHARED_ITERATION0 = ("policy", "data", "generation", "reward", "seed", "loss", "train", "lora")


def adopt_iteration0(cfg: RunConfig, store: RunStore) -> None:
    """Start from another run's finished iteration 0 (checkpoint, responses, metrics), hard-linked."""
    source = RunStore.open_existing(cfg.init_from)
    if not source.finished(0):
        raise UserError(f"init_from {cfg.init_from}: iteration 0 is not finished there")
    # through the dataclasses, so keys added since that run was made compare as their defaults
    theirs = to_dict(load_config(str(source.root / "config.yaml")))
    mine = to_dict(cfg)
    differ = [k for k in SHARED_ITERATION0 if theirs.get(k) != mine.get(k)]
    if differ:
        raise UserError(f"init_from {cfg.init_from}: its iteration 0 used different settings for {', '.join(differ)}")

    def copy(tmp: Path) -> None:
        shutil.copytree(source.iter_dir(0), tmp, dirs_exist_ok=True, copy_function=_link_or_copy)

    atomic_save_dir(store.iter_dir(0), copy)
    store.write_metrics(0, read_json(store.iter_dir(0) / "metrics.json"))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def first_unfinished(store: RunStore, iterations: int) -> int:
    t = 0
    while t < iterations and store.finished(t):
        t += 1
    return t


def prepare(cfg: RunConfig, store: RunStore | None, prompts: list[dict] | None = None, dist=None):
    """Load and check everything (prompts, reward, policy) before a new run directory is created."""
    from optune import loop
    from optune.distributed import Dist
    from optune.generation import encode_prompt, make_generator
    from optune.policy import load_model, load_tokenizer
    from optune.prompts import load_prompts
    from optune.rewards import checked_score, make_reward
    from optune.tracking import make_tracker

    dist = dist or Dist()
    if prompts is None:
        prompts = load_prompts(cfg.data.train, cfg.data.max_prompts)
    use_heldout = cfg.eval.heldout and cfg.data.heldout
    heldout = load_prompts(cfg.data.heldout, cfg.data.max_heldout) if use_heldout else []
    if cfg.init_from and not Path(cfg.init_from).is_dir():
        raise UserError(f"init_from {cfg.init_from} does not exist")
    reward = make_reward(cfg.reward)
    checked_score(reward, prompts[:2], ["", "A short answer."][: len(prompts[:2])])
    initial = resolve_policy(cfg.policy.model) if dist.is_main else None
    dist.barrier()  # the main process converts/builds a cached model once; the others then find it
    initial = initial or resolve_policy(cfg.policy.model)
    tokenizer = load_tokenizer(initial)
    generator = make_generator(cfg.generation, tokenizer, cfg.policy)
    created = store is None
    if created:
        out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
        out = Path(dist.broadcast(str(out)))  # one run directory, named by the main process
        cfg = dataclasses.replace(cfg, output_dir=str(out))
        store = RunStore.create(out, yaml.safe_dump(to_dict(cfg), sort_keys=False),
                                {**versions(), "processes": dist.world}) \
            if dist.is_main else RunStore(out)
    try:
        if created and cfg.init_from:
            adopt_iteration0(cfg, store)
        tracker = make_tracker(cfg.report_to, str(store.root), to_dict(cfg)) if dist.is_main else None
    except UserError:
        if created and dist.is_main:
            shutil.rmtree(store.root)  # nothing half-made: the run never started
        raise
    dist.barrier()  # the other processes read what the main process wrote
    t = first_unfinished(store, cfg.iterations)
    model = load_model(str(store.checkpoint(t - 1)) if t > 0 else initial, cfg.policy.dtype, cfg.policy.device)
    for record in prompts + heldout:
        record["ids"] = encode_prompt(tokenizer, record, cfg.policy.max_prompt_tokens)
    return loop.Context(cfg=cfg, store=store, model=model, tokenizer=tokenizer, generator=generator, reward=reward,
                        prompts=prompts, heldout=heldout, initial_model_path=initial, tracker=tracker, dist=dist)


def run_config(args: argparse.Namespace) -> tuple[RunStore | None, RunConfig]:
    """The store and config of a resumed run (its own config), or no store and the config asked for."""
    if args.resume:
        if args.config or args.overrides:
            raise UserError("--resume takes the run's own config; drop --config and overrides")
        store = RunStore.open_existing(args.resume)
        return store, load_config(str(store.root / "config.yaml"))
    return None, load_config(args.config, args.overrides)


def main(args: argparse.Namespace) -> int:
    if args.help_config:
        print("\n".join(describe()))
        return 0
    store, cfg = run_config(args)
    from optune import distributed, loop

    dist = distributed.init()
    distributed.check(dist, cfg)
    ctx = prepare(cfg, store, dist=dist)
    dist.print(f"optune run: {ctx.store.root} | {len(ctx.prompts)} prompts, {len(ctx.heldout)} held-out | "
               f"{cfg.selection.strategy} rho={cfg.selection.rho:g} {cfg.loss.type} | {cfg.iterations} iterations", flush=True)
    finish(ctx, loop.run(ctx))
    return 0


def finish(ctx, results: list[dict]) -> None:
    """Close trackers and print the before/after summary (main process only)."""
    if ctx.tracker is not None:
        ctx.tracker.close()
    first, last = results[0], results[-1]
    if "eval/heldout_reward_start" in first and "eval/heldout_reward" in last:
        ctx.dist.print(f"held-out reward: {first['eval/heldout_reward_start']:.4f} -> {last['eval/heldout_reward']:.4f}")
    ctx.dist.print(f"done: {ctx.store.root} ({last['time/elapsed_s']:.0f}s of generation, scoring and training)")
