"""Build a run's `Context` (optune.runner.context): `prepare` checks and loads everything before the first iteration.

`prepare` first checks everything that needs no model (`preflight`: output directory, device, backend
names, reward paths), then loads and checks the cheap parts (prompts, reward, policy path, tokenizer,
generation backend), all before a new run directory is created, so a mistake leaves nothing behind; then
it creates (atomically, optune.store.create_dir) or reopens the run store. The loop loads the policy the
first unfinished iteration starts from (`start_policy`).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import platform
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from optune.choices import Bf16, GenerationBackend, RewardBackendName
from optune.config.run import RunConfig, load_run_config, to_dict
from optune.data.preferences import PreferencePair
from optune.distributed import Dist
from optune.errors import UserError
from optune.generation.base import Generator
from optune.losses import PreferenceLoss, make_loss
from optune.models.policy import check_cache, check_model_dir, check_model_spec
from optune.pairs.offline import OfflineSource
from optune.pairs.online import OnlineSource
from optune.pairs.source import PairSource, PromptPool
from optune.prompt import Prompt
from optune.reward.backends import RewardBackend
from optune.runner.context import Context
from optune.runner.resume import computing_keys, write_digest
from optune.runner.tracking import check_trackers
from optune.selection import iteration_pool
from optune.store import RunStore, atomic_save_dir, check_new_dir
from optune.training.iteration import Trainer
from optune.training.reference import ReferenceSource

if TYPE_CHECKING:  # transformers is heavy; only its types are named here
    from transformers import PreTrainedTokenizerBase
from optune.version import __version__


def versions() -> dict:
    import accelerate
    import torch
    import transformers

    return {"optune": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "accelerate": accelerate.__version__,
            "platform": platform.platform()}


def resolve_policy(spec: str) -> str:
    from optune.models.policy import cached_model, resolve_model_path

    if spec == "tiny:llama":
        from optune.models.tiny import build_tiny_policy

        out = cached_model(spec)
        assert out is not None  # a built-in name has its cache folder
        if not (out / "config.json").is_file():
            atomic_save_dir(out, build_tiny_policy)
        return str(out)
    return resolve_model_path(spec)


def default_output_dir(cfg: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{cfg.selection.strategy}-rho{cfg.selection.rho:g}-{cfg.loss.type}"


# iteration 0 samples, scores and trains pi_0 -> pi_1, so everything but selection must match to share it
SHARED_ITERATION0 = ("policy", "data", "generation", "reward", "seed", "loss", "train", "lora")


def _device_type(spec: str) -> str:
    from optune.models.policy import resolve_device

    return resolve_device(spec).split(":")[0]


def _iteration0_settings(cfg: RunConfig, device_type: str) -> dict:
    """The keys of the sections iteration 0 depends on that decide what it computes (optune.runner.resume: a reward
    server's URL or a timeout, changed on a resume, does not count), with generation.impl as it resolves on this
    device: a run made with "decode" before "auto" became the default computed what "auto" computes on a CPU."""
    out = {k: v for k, v in computing_keys(cfg).items() if re.split(r"[.\[]", k)[0] in SHARED_ITERATION0}
    out["generation.impl"] = str(cfg.generation.resolved_impl(device_type))
    return out


def adopt_iteration0(cfg: RunConfig, store: RunStore) -> None:
    """Start from another run's finished iteration 0 (checkpoint, responses, metrics), hard-linked."""
    source = RunStore.open_existing(str(cfg.init_from), writer=False)
    if not source.finished(0):
        raise UserError(f"init_from {cfg.init_from}: iteration 0 is not finished there")
    # through the dataclasses, so keys added since that run was made compare as the values it ran with
    device_type = _device_type(cfg.policy.device)
    theirs = _iteration0_settings(load_run_config(str(source.config)), device_type)
    mine = _iteration0_settings(cfg, device_type)
    differ = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
    if differ:
        raise UserError(f"init_from {cfg.init_from}: its iteration 0 used different settings for {', '.join(differ)}")

    metrics = source.read_finished(0, source.metrics(0))  # a damaged one is named before anything is copied

    def copy(tmp: Path) -> None:
        shutil.copytree(source.iter_dir(0), tmp, dirs_exist_ok=True, copy_function=_link_or_copy)

    store.save_dir(store.iter_dir(0), copy)
    store.write_metrics(0, metrics)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def resolve_bf16(cfg: RunConfig) -> tuple[RunConfig, str]:
    """cfg with train.bf16 "auto" made true or false for this machine, and why (versions.json keeps the why)."""
    from optune.models.policy import resolve_device
    from optune.training.precision import bf16_pays

    if cfg.train.bf16 != Bf16.AUTO:
        return cfg, f"train.bf16={cfg.train.bf16} as set"
    if cfg.generation.sampler_logprobs:  # the sampler's float32 log-probs must match training's forward
        use, why = False, "generation.sampler_logprobs needs float32 training log-probs"
    else:
        use, why = bf16_pays(resolve_device(cfg.policy.device))
    train = dataclasses.replace(cfg.train, bf16=Bf16.TRUE if use else Bf16.FALSE)
    return dataclasses.replace(cfg, train=train), f"train.bf16=auto -> {str(use).lower()}: {why}"


def name_output_dir(cfg: RunConfig, dist: Dist) -> RunConfig:
    """cfg with the new run's directory set (the default is timestamped: the main process names it)."""
    out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    return dataclasses.replace(cfg, output_dir=dist.broadcast(str(out)))


def check_device(spec: str) -> None:
    """policy.device names a device this machine has."""
    if spec in ("auto", "cpu"):
        return
    import torch

    from optune.models.policy import resolve_device

    device = resolve_device(spec)  # raises when CUDA is missing altogether
    kind, _, index = device.partition(":")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise UserError(f"policy.device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"policy.device {spec}: MPS is not available here (use auto or cpu)")


def preflight(cfg: RunConfig, store: RunStore | None) -> None:
    """Checks that need no model, before a run directory is created or anything is loaded.

    A new run's output_dir must be creatable (not a file, not under a file, writable, empty if present);
    a local policy's config.json readable, and the cache writable where a built-in policy is yet to be built;
    the trackers report_to names must be installed; the device must exist; files the reward and init_from
    name must exist (names of choices were checked as the config loaded).
    """
    if store is None:
        check_new_dir(cfg.run_dir)  # first: the commonest mistake, found before torch is imported
    check_trackers(cfg.report_to)
    check_device(cfg.policy.device)
    check_policy(cfg.policy.model)
    if cfg.reward.backend == RewardBackendName.HF:
        model = Path(cfg.reward.model or "").expanduser()
        if not model.is_dir():
            raise UserError(f"reward.model {cfg.reward.model}: no such directory")
        check_model_dir(model, f"reward.model {cfg.reward.model}")
    if cfg.init_from:
        check_init_from(cfg.init_from)
    check_packages(cfg)


def check_packages(cfg: RunConfig) -> None:
    """The optional packages the config needs are installed (else a run would stop after iteration 0's start)."""
    needs = {"vllm": cfg.generation.backend == GenerationBackend.VLLM, "peft": cfg.lora.r > 0}
    extra = {"vllm": "generation.backend=vllm needs the vllm package (docs/scaling.md says how to install it)",
             "peft": "lora.r > 0 needs the peft package (pip install 'optune[lora]')"}
    for package, needed in needs.items():
        if needed and importlib.util.find_spec(package) is None:
            raise UserError(f"{extra[package]}; it is not installed")


def check_init_from(spec: str) -> None:
    """init_from names an optune run whose iteration 0 is finished (its settings are compared as the new run is
    made, adopt_iteration0)."""
    root = Path(spec)
    if not root.is_dir():
        raise UserError(f"init_from {spec} is a file, not a run directory" if root.exists() else
                        f"init_from {spec} does not exist")
    source = RunStore(root, writer=False)
    if not (source.marker.is_file() and source.config.is_file()):
        raise UserError(f"init_from {spec} is not an optune run directory (no {source.marker.name} or config.yaml)")
    if not source.finished(0):
        raise UserError(f"init_from {spec}: iteration 0 is not finished there")


def check_policy(spec: str) -> None:
    """policy.model, without loading it: a local folder's config.json is readable, a built-in model's cache is
    writable where it is yet to be built."""
    check_model_spec(spec, "policy.model")
    check_cache(spec)


def create_store(cfg: RunConfig, dist: Dist, precision: str = "") -> RunStore:
    """The new run directory, made by the main process all at once (the others only read it)."""
    if not dist.is_main:
        return RunStore(cfg.run_dir, writer=False)

    def fill(store: RunStore) -> None:
        write_digest(store, cfg)
        if cfg.init_from:
            adopt_iteration0(cfg, store)

    return RunStore.create(cfg.run_dir, yaml.safe_dump(to_dict(cfg), sort_keys=False),
                           {**versions(), "processes": dist.world, "precision": precision}, fill)


def prepare(cfg: RunConfig, store: RunStore | None, prompts: list[Prompt] | None = None, dist: Dist | None = None,
            offline: dict[str, PreferencePair] | None = None) -> Context:
    """Load and check everything (prompts, reward, tokenizer) before a new run directory is created, then build
    the stages; `offline`: the fixed pairs of `optune dpo` (their prompts are `prompts`) in place of sampling."""
    dist = dist or Dist()
    cfg, precision = resolve_bf16(cfg)
    if store is None:
        cfg = name_output_dir(cfg, dist)
    preflight(cfg, store)
    from optune.data.prompts import load_prompts
    from optune.generation import make_generator
    from optune.models.policy import load_tokenizer
    from optune.reward.backends import checked_score, make_reward
    from optune.runner.tracking import make_tracker

    if prompts is None:
        prompts = load_prompts(cfg.data.train, cfg.data.max_prompts, field=cfg.data.prompt_field)
    if cfg.data.prompts_per_iteration is not None:
        if offline is not None:
            raise UserError("data.prompts_per_iteration applies to optune run (fresh prompts to sample); "
                            "optune dpo trains on its pairs: leave it null")
        iteration_pool(len(prompts), cfg.data.prompts_per_iteration, 0, cfg.seed)  # in range, before any model
    use_heldout = cfg.data.heldout if cfg.eval.heldout else None
    heldout = load_prompts(use_heldout, cfg.data.max_heldout, field=cfg.data.prompt_field) if use_heldout else []
    reward = make_reward(cfg.reward)
    checked_score(reward, prompts[:2], ["", "A short answer."][: len(prompts[:2])])
    initial = resolve_policy(cfg.policy.model) if dist.is_main else None
    dist.barrier()  # the main process converts/builds a cached model once; the others then find it
    initial = initial or resolve_policy(cfg.policy.model)
    tokenizer = load_tokenizer(initial)
    generator = make_generator(cfg.generation, tokenizer, cfg.policy)
    created = store is None
    if store is None:
        store = create_store(cfg, dist, precision)
    try:
        tracker = make_tracker(cfg.report_to, str(store.root), to_dict(cfg)) if dist.is_main else None
    except UserError:
        if created:
            shutil.rmtree(store.root)  # nothing half-made: the run never started
            store.close()
        raise
    if not store.prompts.is_file():  # the prompt texts, so that `optune export` needs no access to data.train
        store.write_jsonl(store.prompts, [{"id": p.id, "prompt": p.text, "history": p.history} for p in prompts])
    dist.barrier()  # the other processes read what the main process wrote
    stages = Stages(cfg, store, tokenizer, generator, reward, initial, dist)
    pool = PromptPool(stages.encoded(prompts), cfg.data.prompts_per_iteration, cfg.seed)
    return Context(cfg=cfg, store=store, tokenizer=tokenizer, generator=generator, reward=reward, pool=pool,
                   heldout=stages.encoded(heldout), initial_model_path=initial, source=stages.source(pool, offline),
                   loss=stages.loss, trainer=stages.trainer(), tracker=tracker, dist=dist)


@dataclass
class Stages:
    """What `prepare` loaded, and the stages built from it, each given what it uses."""

    cfg: RunConfig
    store: RunStore
    tokenizer: PreTrainedTokenizerBase
    generator: Generator
    reward: RewardBackend
    initial_model_path: str
    dist: Dist
    loss: PreferenceLoss = field(init=False)
    """The run's loss, built once: the pairs record its weights, the trainer minimises it."""

    def __post_init__(self) -> None:
        loss = self.cfg.loss
        self.loss = make_loss(loss.type, loss.beta1, loss.beta2, loss.nll_weight)

    def encoded(self, prompts: list[Prompt]) -> list[Prompt]:
        """`prompts` with their chat-template token ids (`Prompt.ids`)."""
        from optune.generation import encode_prompt

        limit = self.cfg.policy.max_prompt_tokens
        return [dataclasses.replace(p, ids=encode_prompt(self.tokenizer, p, limit)) for p in prompts]

    def source(self, pool: PromptPool, offline: dict[str, PreferencePair] | None) -> PairSource:
        """Online sampling, or the fixed pairs of `optune dpo`."""
        cfg = self.cfg
        reward_batch = max(1, cfg.reward.batch_size // 2)  # two responses per prompt
        if offline is not None:
            return OfflineSource(offline, self.store, self.reward, self.tokenizer, pool.prompts,
                                 cfg.generation.max_new_tokens, reward_batch, self.dist)
        return OnlineSource(self.store, self.generator, self.reward, pool, cfg.selection, self.initial_model_path,
                            max(1, cfg.generation.batch_size // 2), reward_batch, cfg.reward.missing_eos_penalty,
                            cfg.seed, self.dist)

    def trainer(self) -> Trainer:
        cfg = self.cfg
        references = ReferenceSource(self.store, cfg.loss.reference, self.initial_model_path, cfg.policy, cfg.train,
                                     self.tokenizer.pad_token_id, cfg.generation.sampler_logprobs, cfg.seed, self.dist)
        return Trainer(self.store, self.loss, cfg.train, cfg.policy, cfg.lora, self.tokenizer, references, cfg.seed,
                       self.dist)
