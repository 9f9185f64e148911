"""What a run needs before its first iteration: the `Context` the loop works on, built by `prepare`.

`prepare` loads and checks everything cheap (prompts, reward, policy path, tokenizer, generation backend)
before a new run directory is created, so a mistake leaves nothing behind; then it creates (or reopens)
the run store and loads the policy the first unfinished iteration starts from. `Timer` and `progress`
are the per-phase clock and progress bars every stage shares.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from optune import __version__
from optune.config import RunConfig, load_config, to_dict
from optune.distributed import Dist
from optune.errors import UserError
from optune.store import RunStore, atomic_save_dir, read_json


@dataclass
class Context:
    """Everything an iteration needs; built once by `prepare`."""

    cfg: RunConfig
    store: RunStore
    model: object
    tokenizer: object
    generator: object
    """A generation backend (optune.generation.Generator)."""
    reward: object
    """A reward backend (optune.reward.backends.RewardBackend)."""
    prompts: list[dict]
    heldout: list[dict]
    initial_model_path: str
    source: object = None
    """Where pairs come from (optune.pairs.PairSource); the online source unless set."""
    tracker: object = None
    times: dict = field(default_factory=dict)
    dist: Dist = field(default_factory=Dist)
    """Processes under `accelerate launch` (inactive in a plain run); see optune.distributed."""


def progress(ctx: Context, desc: str, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False, dynamic_ncols=True, disable=not ctx.dist.is_main)


class Timer:
    """Adds elapsed seconds to times[key]."""

    def __init__(self, times: dict, key: str):
        self.times, self.key = times, key

    def __enter__(self):
        self.start = time.perf_counter()

    def __exit__(self, *exc):
        self.times[self.key] = self.times.get(self.key, 0.0) + time.perf_counter() - self.start


def versions() -> dict:
    import accelerate
    import torch
    import transformers

    return {"optune": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "platform": platform.platform()}


def resolve_policy(spec: str) -> str:
    from optune.models.policy import cache_root, resolve_model_path

    if spec == "tiny:llama":
        from optune.models.tiny import build_tiny_policy

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
    source = RunStore.open_existing(cfg.init_from, writer=False)
    if not source.finished(0):
        raise UserError(f"init_from {cfg.init_from}: iteration 0 is not finished there")
    # through the dataclasses, so keys added since that run was made compare as their defaults
    theirs = to_dict(load_config(str(source.config)))
    mine = to_dict(cfg)
    differ = [k for k in SHARED_ITERATION0 if theirs.get(k) != mine.get(k)]
    if differ:
        raise UserError(f"init_from {cfg.init_from}: its iteration 0 used different settings for {', '.join(differ)}")

    def copy(tmp: Path) -> None:
        shutil.copytree(source.iter_dir(0), tmp, dirs_exist_ok=True, copy_function=_link_or_copy)

    store.save_dir(store.iter_dir(0), copy)
    store.write_metrics(0, read_json(store.metrics(0)))


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


def create_store(cfg: RunConfig, dist: Dist) -> tuple[RunConfig, RunStore]:
    """A new run directory, named by the main process (the others only read it)."""
    out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    out = Path(dist.broadcast(str(out)))
    cfg = dataclasses.replace(cfg, output_dir=str(out))
    if not dist.is_main:
        return cfg, RunStore(out, writer=False)
    store = RunStore.create(out, yaml.safe_dump(to_dict(cfg), sort_keys=False), {**versions(), "processes": dist.world})
    try:
        if cfg.init_from:
            adopt_iteration0(cfg, store)
    except UserError:
        shutil.rmtree(store.root)  # nothing half-made: the run never started
        raise
    return cfg, store


def prepare(cfg: RunConfig, store: RunStore | None, prompts: list[dict] | None = None, dist: Dist | None = None,
            source=None) -> Context:
    """Load and check everything (prompts, reward, policy) before a new run directory is created."""
    from optune.data.prompts import load_prompts
    from optune.generation import encode_prompt, make_generator
    from optune.models.policy import load_model, load_tokenizer
    from optune.reward.backends import checked_score, make_reward
    from optune.tracking import make_tracker

    dist = dist or Dist()
    if prompts is None:
        prompts = load_prompts(cfg.data.train, cfg.data.max_prompts, field=cfg.data.prompt_field)
    use_heldout = cfg.eval.heldout and cfg.data.heldout
    heldout = load_prompts(cfg.data.heldout, cfg.data.max_heldout, field=cfg.data.prompt_field) if use_heldout else []
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
        cfg, store = create_store(cfg, dist)
    try:
        tracker = make_tracker(cfg.report_to, str(store.root), to_dict(cfg)) if dist.is_main else None
    except UserError:
        if created:
            shutil.rmtree(store.root)  # nothing half-made: the run never started
        raise
    if not store.prompts.is_file():  # the prompt texts, so that `optune export` needs no access to data.train
        store.write_jsonl(store.prompts, [{"id": r["id"], "prompt": r["prompt"], "history": r.get("history") or []}
                                          for r in prompts])
    dist.barrier()  # the other processes read what the main process wrote
    t = first_unfinished(store, cfg.iterations)
    model = load_model(str(store.checkpoint(t - 1)) if t > 0 else initial, cfg.policy.dtype, cfg.policy.device)
    for record in prompts + heldout:
        record["ids"] = encode_prompt(tokenizer, record, cfg.policy.max_prompt_tokens)
    if source is None:
        from optune.pairs.online import OnlineSource

        source = OnlineSource()
    return Context(cfg=cfg, store=store, model=model, tokenizer=tokenizer, generator=generator, reward=reward,
                   prompts=prompts, heldout=heldout, initial_model_path=initial, source=source, tracker=tracker,
                   dist=dist)
