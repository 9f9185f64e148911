"""The Python API: `optune.run`, `optune.dpo` and `optune.export`; the `optune run|dpo|export` commands call these.

    import optune

    def brevity(prompts, responses):                      # any f(prompts, responses) -> list of floats
        return [-len(r) / 100 for r in responses]

    result = optune.run("configs/tiny.yaml", iterations=3, selection={"rho": 0.25},
                        reward={"function": brevity})     # a Python function needs no module:function string
    result.metrics[-1].heldout.reward                     # one IterationMetrics per iteration (.to_log(): TRL names)
    result.checkpoint                                     # the final policy, loadable by transformers
    optune.export(result.run_dir, "prefs/")               # its preference pairs in TRL's format

`config` is a YAML path, a mapping shaped like the YAML, a `RunConfig`, or None for the embedded default.
Overrides are keyword arguments: a section as a mapping (`selection={"rho": 0.25}`), one key with a double
underscore (`selection__rho=0.25`), or a dotted key (`**{"selection.rho": 0.25}`); values are Python values,
checked like YAML ones. Mistakes raise `optune.UserError` (one line naming the problem) before any work.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optune.choices import RewardBackendName
from optune.config.keys import expand_aliases
from optune.config.run import TRL_ALIASES, RunConfig, apply_mapping, override_mapping, read_config_file, validate
from optune.endpoint import EndpointError
from optune.errors import Damaged, RunFailed, UserError
from optune.formatting import num, plural
from optune.report.card import write_run_card
from optune.runner import health
from optune.runner.metrics import IterationMetrics, heldout_curve, start_reward
from optune.runner.resume import failed_midway, flat, leaves, record_deployment, resume_command, resumed_config
from optune.store import MARKER, RunStore, WriteError

if TYPE_CHECKING:
    from optune.distributed import Dist
    from optune.runner.context import Context

ConfigSource = str | os.PathLike | Mapping | RunConfig | None


@dataclass
class RunResult:
    """What `optune.run` and `optune.dpo` return."""

    run_dir: Path
    """The run directory (resume it with optune.run(resume=run_dir) or `optune run --resume`)."""
    config: RunConfig
    """The resolved config the run used (its config.yaml)."""
    metrics: list[IterationMetrics]
    """One record per iteration (optune.runner.metrics); `m.to_log()` is the dict of metrics.jsonl, TRL's names
    (loss, rewards/chosen, ..., objective/scores, eval/heldout_reward, the time split), and `m[name]` one of them."""

    @property
    def checkpoint(self) -> Path:
        """The final policy (safetensors and tokenizer), loadable with transformers' from_pretrained."""
        return RunStore(self.run_dir, writer=False).checkpoint(len(self.metrics) - 1)

    @property
    def best_iteration(self) -> int | None:
        """The iteration whose trained policy scored the highest held-out reward (None without held-out prompts)."""
        return health.best_iteration(heldout_curve(self.metrics))

    @property
    def best_checkpoint(self) -> Path | None:
        """That iteration's checkpoint (pi_{t+1}), the one to use where the held-out reward is the goal."""
        t = self.best_iteration
        return None if t is None else RunStore(self.run_dir, writer=False).checkpoint(t)

    @property
    def heldout_rewards(self) -> list[float]:
        """The held-out curve: the starting policy's mean reward, then one per iteration (empty without one)."""
        start = start_reward(self.metrics)
        return ([start] if start is not None else []) + [reward for _, reward in heldout_curve(self.metrics)]


def run(config: ConfigSource = None, *, resume: str | os.PathLike | None = None, **overrides: Any) -> RunResult:
    """Online preference tuning (OPTune), as `optune run`: every iteration's metrics once the run is done.

    `resume=RUN_DIR` finishes an interrupted run with its own config; overrides may change its deployment-only
    keys (optune.config.run.DEPLOYMENT_KEYS, e.g. reward={"url": ...}) and give again reward={"function": f}, for a
    run whose reward was a Python function (config.yaml cannot hold one). A run that stops midway raises
    `optune.RunFailed` (a UserError) naming the cause and the command that resumes it.
    """
    return tune("run", config, _flat(overrides), resume)


def dpo(config: ConfigSource = None, *, resume: str | os.PathLike | None = None, **overrides: Any) -> RunResult:
    """Offline DPO / wDPO on fixed preference pairs (data.train), as `optune dpo`; arguments as for `run`."""
    return tune("dpo", config, _flat(overrides), resume)


def export(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, dedupe: bool = False):
    """A run's trained preference pairs in TRL's format, and a model card beside its final checkpoint;
    `dedupe`: one row per distinct (prompt, chosen, rejected), as `optune export --dedupe`.

    Returns an optune.report.export.ExportResult (the paths written, pairs per iteration).
    """
    from optune.report.export import export_run

    return export_run(run_dir, out, dedupe=dedupe)


def _flat(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword overrides with "__" for "." in their keys (selection__rho -> selection.rho)."""
    return {key.replace("__", "."): value for key, value in overrides.items()}


def build_config(config: ConfigSource = None, overrides: Mapping[str, Any] | None = None,
                 command: str = "run") -> RunConfig:
    """Defaults, then `config` (YAML path, mapping or RunConfig), then `overrides` (dotted keys or sections).

    The defaults are RunConfig's; for `command` "dpo" data.max_prompts is null (train on every pair read) unless
    `config` or `overrides` set it (a RunConfig given whole keeps its own value).

    TRL's names (beta, learning_rate, ...; optune.config.run.TRL_ALIASES) are accepted for the keys they mean.
    Relative paths in a YAML file are relative to its folder (optune.config.run.PATH_KEYS); in a mapping or an
    override, to the working directory. A Python function as reward.function selects the callable backend
    unless reward.backend is set too.
    """
    overrides = dict(overrides or {})
    if isinstance(config, RunConfig):  # a copy: the caller's config stays as it was
        cfg = dataclasses.replace(config, **{f.name: copy.copy(getattr(config, f.name))
                                             for f in dataclasses.fields(config)
                                             if dataclasses.is_dataclass(getattr(config, f.name))})
    elif isinstance(config, Mapping):
        cfg = _defaults(command)
        apply_mapping(cfg, expand_aliases(dict(config), TRL_ALIASES))
    elif config is None or isinstance(config, (str, os.PathLike)):
        cfg = _defaults(command)
        if config is not None:
            apply_mapping(cfg, read_config_file(os.fspath(config)))
    else:
        raise UserError(f"config must be a YAML path, a mapping or a RunConfig; got {type(config).__name__}")
    for key, value in overrides.items():
        apply_mapping(cfg, override_mapping(key, value))
    if callable(cfg.reward.function) and "reward.backend" not in leaves(overrides):
        cfg.reward.backend = RewardBackendName.CALLABLE
    validate(cfg)
    return cfg


def _defaults(command: str) -> RunConfig:
    """RunConfig's defaults, but optune dpo trains every pair it reads: a preference set is what it is given,
    and a silent cap of the online default (96 prompts) would train on a part of it unnoticed."""
    cfg = RunConfig()
    if command == "dpo":
        cfg.data.max_prompts = None
    return cfg


def tune(command: str, config: ConfigSource, overrides: Mapping[str, Any], resume=None) -> RunResult:
    """`optune run` ("run") or `optune dpo` ("dpo"): new or resumed, from Python or the command line.

    The directory locks the run took (optune.store.lock) are released when it ends, however it ends, so the
    same Python process can resume or export the run next.
    """
    from optune import distributed
    from optune.store.lock import release_all

    dist = distributed.init() if command == "run" else distributed.Dist()
    root, made = None, False  # the run directory once known; whether this call is the one that makes it
    try:
        store = None
        if resume is not None:
            if config is not None:
                raise UserError("resume takes the run's own config: drop the config and overrides")
            store = RunStore.open_existing(os.fspath(resume), writer=dist.is_main)
            root = store.root
            cfg = resumed_config(store, overrides)
        else:
            cfg = build_config(config, overrides, command)
        if command == "dpo":
            cfg = offline_config(cfg, store)
        if store is not None and _finished(store, cfg, dist):
            result = RunResult(run_dir=store.root, config=cfg, metrics=_finished_metrics(store, cfg))
            _write_summary(store, result)  # a kill after the last metrics.json came before it
            # ... or before the model card
            write_run_card(store, cfg, [m.to_log() for m in result.metrics], if_missing=True)
            return result
        distributed.check(dist, cfg)
        if store is None:
            from optune.runner.prepare import name_output_dir

            cfg = name_output_dir(cfg, dist)
            root = cfg.run_dir
            made = not (root / MARKER).exists()
        return _offline(cfg, store) if command == "dpo" else _online(cfg, store, dist)
    except RunFailed:
        raise
    except (EndpointError, WriteError) as err:  # a server or the disk, once the run directory exists: resumable
        if root is not None and (store is not None or made) and (root / MARKER).is_file():
            raise failed_midway(command, err, root, cfg) from err
        raise
    except RuntimeError as err:  # a collective failed: another process died or hung (several processes only)
        lost = distributed.lost_process(dist, err)
        if lost is None:
            raise
        if root is not None and (store is not None or made) and (root / MARKER).is_file():
            raise failed_midway(command, lost, root, cfg) from err
        raise lost from err
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM (optune.cli): the CLI prints how to resume
        if root is not None and (store is not None or made) and (root / MARKER).is_file():
            err.resume_command = resume_command(command, root, cfg)  # type: ignore[attr-defined]
        raise
    finally:
        release_all()  # one run at a time per process: every lock held now is this run's


def _finished(store: RunStore, cfg: RunConfig, dist: Dist) -> bool:
    """A resumed run with nothing left says so, without loading anything (metrics.jsonl is rebuilt: a kill
    after the last iteration's metrics.json may have cut it short)."""
    done = _finished_metrics(store, cfg)
    stopped = health.stop_early(RunResult(store.root, cfg, done).heldout_rewards, cfg.eval.early_stop)
    if len(done) < cfg.iterations and not stopped:
        return False
    store.rebuild_metrics_log()
    how = (f"its {plural(cfg.iterations, 'iteration')}" if len(done) == cfg.iterations else
           f"{len(done)} of its {cfg.iterations} iterations and stopped early (eval.early_stop)")
    dist.print(f"{store.root} already finished {how}; nothing left to do")
    return True


def _finished_metrics(store: RunStore, cfg: RunConfig) -> list[IterationMetrics]:
    """The metrics of the finished iterations before the first unfinished one."""
    out = []
    for t in range(cfg.iterations):
        if not store.finished(t):
            break
        out.append(IterationMetrics.from_log(store.read_finished(t, store.metrics(t))))
    return out


def _online(cfg: RunConfig, store: RunStore | None, dist) -> RunResult:
    from optune.runner.prepare import prepare

    ctx = prepare(cfg, store, dist=dist)
    _record_deployment(ctx, store)
    ctx.dist.print(f"optune run: {ctx.store.root} | {len(ctx.pool.prompts)} prompts, {len(ctx.heldout)} held-out | "
                   f"{cfg.selection.strategy} rho={cfg.selection.rho:g} {cfg.loss.type} | "
                   f"{plural(cfg.iterations, 'iteration')}", flush=True)
    if cfg.reward.function and cfg.reward.backend != RewardBackendName.CALLABLE:  # e.g. a config file's, overridden
        ctx.dist.print(f"note: reward.function ({cfg.reward.function}) is not used: reward.backend is "
                       f"{cfg.reward.backend}")
    return _finish(ctx, _loop(ctx, "run"))


def _record_deployment(ctx, store: RunStore | None) -> None:
    """A resumed run that passed its checks records its new deployment-only values in config.yaml."""
    if store is not None:
        for key in record_deployment(ctx.store, ctx.cfg):
            ctx.dist.print(f"resuming with {key}={flat(ctx.cfg)[key]!r} (written to config.yaml)")


def _loop(ctx: Context, command: str) -> list[IterationMetrics]:
    """The loop; a failure it reports (a server, the disk, a reward function) stops a run that resumes."""
    from optune.runner import loop

    try:
        return loop.run(ctx)
    except (RunFailed, Damaged):  # Damaged: a resume would meet it again
        raise
    except UserError as err:
        raise failed_midway(command, err, ctx.store.root, ctx.cfg) from err


def offline_config(cfg: RunConfig, store: RunStore | None) -> RunConfig:
    """One pass over a fixed preference set (train.epochs times), the starting policy as the reference."""
    if store is None:
        if cfg.init_from:
            raise UserError("init_from is for online runs; optune dpo starts from policy.model")
        if cfg.output_dir is None:
            cfg = dataclasses.replace(cfg, output_dir=f"runs/{time.strftime('%Y%m%d-%H%M%S')}-offline-{cfg.loss.type}")
    return dataclasses.replace(cfg, iterations=1)


def _offline(cfg: RunConfig, store: RunStore | None) -> RunResult:
    from optune.data.preferences import read_preferences
    from optune.pairs import offline
    from optune.runner.prepare import preflight, prepare

    if cfg.data.train.startswith("verifiable:"):
        raise UserError("optune dpo needs preference pairs in data.train (the built-in task has prompts only)")
    preflight(cfg, store)  # before the (possibly large) preference files are read
    data = read_preferences([s.strip() for s in cfg.data.train.split(",") if s.strip()])
    print(f"optune dpo: {data.summary()}", flush=True)
    pairs = offline.sample_pairs(data, cfg.data.max_prompts, cfg.seed)
    if len(pairs) < len(data.pairs):
        print(f"optune dpo: training {len(pairs)} of {len(data.pairs)} pairs (data.max_prompts={cfg.data.max_prompts}, "
              "a seeded random sample; data.max_prompts=null trains all)", flush=True)
    ctx = prepare(cfg, store, prompts=offline.pair_prompts(pairs), offline=pairs)
    _record_deployment(ctx, store)
    print(f"optune dpo: {ctx.store.root} | {len(ctx.pool.prompts)} pairs, {len(ctx.heldout)} held-out | "
          f"{cfg.loss.type}, {plural(cfg.train.epochs, 'epoch')}", flush=True)
    return _finish(ctx, _loop(ctx, "dpo"))


def _finish(ctx: Context, results: list[IterationMetrics]) -> RunResult:
    """Close trackers and print the before/after summary (main process only)."""
    if ctx.tracker is not None:
        ctx.tracker.close()
    start, last = start_reward(results), results[-1]
    if start is not None and last.heldout is not None:
        ctx.dist.print(f"held-out reward: {num(start)} -> {num(last.heldout.reward)}")
    result = RunResult(run_dir=ctx.store.root, config=ctx.cfg, metrics=results)
    best = result.best_iteration
    _write_summary(ctx.store, result)
    write_run_card(ctx.store, ctx.cfg, [m.to_log() for m in results])
    work = "generation, scoring and training" if ctx.source.generates else "training"
    ctx.dist.print(f"done: {ctx.store.root} ({last.elapsed_s:.0f}s of {work})")
    if best is not None:
        ctx.dist.print(f"best held-out reward: iteration {best} ({num(dict(heldout_curve(results))[best])}), "
                       f"checkpoint {result.best_checkpoint}")
    # the last line says where the policy is and what to do with the run next
    ctx.dist.print(f"final policy: {result.checkpoint} (model card: README.md there) | next: "
                   f"optune report {ctx.store.root}, optune export {ctx.store.root}")
    return result


def _write_summary(store: RunStore, result: RunResult) -> None:
    """RUN/summary.json (main process; the store writes nothing elsewhere), checkpoints relative to the run
    directory so that a moved or copied run still reads right."""
    best = result.best_iteration
    root = result.run_dir
    store.write_json(store.summary, {
        "iterations_run": len(result.metrics), "iterations": result.config.iterations,
        "stopped_early": len(result.metrics) < result.config.iterations, "heldout_rewards": result.heldout_rewards,
        "best_iteration": best,
        "best_checkpoint": str(result.best_checkpoint.relative_to(root)) if result.best_checkpoint else None,
        "final_checkpoint": str(result.checkpoint.relative_to(root))})
