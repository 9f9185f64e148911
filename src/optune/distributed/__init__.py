"""Several processes through accelerate: `accelerate launch [--config_file configs/accelerate/X.yaml] -m optune run`.

No home-made distributed layer: accelerate builds the process group and wraps the model (DDP, FSDP or
DeepSpeed, whichever its config file names), or, with `train.fsdp=true`, torch's FSDP2 shards it (`sharding`:
parameters, gradients and optimizer state, 1/N per process). optune only decides who does what:
- generation, scoring and held-out evaluation: batches are dealt round-robin to processes, and the
  results gathered to every process (`batched`), so each process sees the whole iteration;
- reference log-probs: each process computes a contiguous slice of the pairs (`split` + `gather`);
- training: every optimizer step's pairs are split over processes; the per-process loss is scaled by the
  world size because DDP/FSDP average gradients, so the step's gradient is the same mean over the same pairs
  as in one process (see optune.training);
- only the main process writes the run directory (RunStore(writer=dist.is_main)); the others read what it wrote
  after a barrier, and reload each new checkpoint from disk.

One process (plain `optune run`) gets an inactive `Dist` and takes exactly the single-process code paths.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path

from optune.clock import Progress
from optune.errors import UserError
from optune.store import RunStore


class Dist:
    """Rank, world size and the few collectives optune needs; inactive (world 1) without accelerate."""

    def __init__(self, accelerator=None):
        self.accelerator = accelerator
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.world = accelerator.num_processes if accelerator is not None else 1
        self.wrapped = None

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def print(self, *args, **kwargs) -> None:
        """print on the main process only (one line per run, not one per process)."""
        if self.is_main:
            print(*args, **kwargs)

    def gather(self, obj) -> list:
        """Every process's `obj`, in rank order, on every process."""
        if not self.active:
            return [obj]
        from accelerate.utils import gather_object

        return gather_object([obj])

    def broadcast(self, obj):
        """The main process's `obj` on every process."""
        return self.gather(obj)[0]

    def barrier(self) -> None:
        if self.active:
            self.accelerator.wait_for_everyone()

    def split(self, items: list) -> list:
        """This process's contiguous share of items (shares in rank order concatenate back to items)."""
        size = -(-len(items) // self.world)
        return items[self.rank * size:(self.rank + 1) * size]

    def shard(self, model):
        """FSDP2 (`train.fsdp`): `model` fully sharded over the processes, before its optimizer is built (one
        process: unchanged, there is nothing to shard); remembered for `full_state_dict`."""
        if not self.active:
            return model
        from optune.distributed import sharding

        self.accelerator.free_memory()  # drop the previous iteration's wrappers
        self.wrapped = sharding.shard(model, self.accelerator.device, self.world)
        return self.wrapped

    def sharded(self, model) -> bool:
        """Whether `model` is sharded with FSDP2 (by `shard`, or by accelerate's FSDP2 plugin)."""
        if not self.active:
            return False
        from optune.distributed import sharding

        return sharding.is_sharded(model)

    def prepare(self, model, optimizer, micro_batch: int = 1):
        """Wrap for the configured strategy (DDP/FSDP/DeepSpeed); remembered for `full_state_dict`. A model that
        `shard` sharded is already distributed: it and its optimizer are returned as they are. `micro_batch`:
        the pairs per micro-batch, which DeepSpeed's config must name when no dataloader is prepared."""
        if not self.active or self.sharded(model):
            return model, optimizer
        self.accelerator.free_memory()  # drop the previous iteration's wrappers
        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if plugin is not None:
            plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = micro_batch
        model, optimizer = self.accelerator.prepare(model, optimizer)
        self.wrapped = model
        return model, optimizer

    def no_sync(self, model, sync: bool):
        """Skip the gradient all-reduce on micro-batches before the last one of an optimizer step. A sharded
        model reduce-scatters every micro-batch's gradients: they accumulate in the shards, never whole."""
        if sync or not self.active or self.sharded(model):
            return contextlib.nullcontext()
        return self.accelerator.no_sync(model)

    def backward(self, loss) -> None:
        self.accelerator.backward(loss) if self.active else loss.backward()

    def clip_grad_norm(self, model, max_norm: float) -> float | None:
        """Clip the whole gradient (every process's part) to `max_norm`; its norm before clipping, or None under
        DeepSpeed (its config clips)."""
        import torch

        if self.sharded(model):
            from optune.distributed import sharding

            return sharding.clip_grad_norm(model.parameters(), max_norm)
        clip = self.accelerator.clip_grad_norm_ if self.active else torch.nn.utils.clip_grad_norm_
        norm = clip(model.parameters(), max_norm)
        return None if norm is None else float(norm)

    def sum(self, values: list[float]) -> list[float]:
        if not self.active:
            return values
        import torch

        return self.accelerator.reduce(torch.tensor(values, dtype=torch.float64), reduction="sum").tolist()

    def full_state_dict(self):
        """Unsharded weights of the last wrapped model (a collective: every process must call it)."""
        if not self.active or self.wrapped is None:
            return None
        if self.sharded(self.wrapped):
            from optune.distributed import sharding

            return sharding.full_state_dict(self.wrapped)  # whole on the main process, {} on the others
        return self.accelerator.get_state_dict(self.wrapped)

    def unwrap(self, model):
        return self.accelerator.unwrap_model(model) if self.active else model


class ProcessLost(UserError):
    """Another process of the run died, or stopped answering for longer than the process group's timeout: a
    collective of this process failed. Every surviving process raises it and stops with one line (the CLI's),
    instead of a traceback per process or a hang; the run resumes from its files."""


COLLECTIVE_FAILURE = re.compile(r"gloo|NCCL|ProcessGroup|Connection (reset|closed)|Broken pipe|timed out|Timeout")
"""What the RuntimeError of a failed collective says (torch raises gloo's and NCCL's errors as plain ones)."""


def lost_process(dist: Dist, err: BaseException) -> ProcessLost | None:
    """`err` as a ProcessLost where it is a collective's failure (gloo's closed or reset connection, NCCL's
    error, a timeout: torch raises RuntimeError or DistError for these), else None."""
    if not dist.active or not isinstance(err, RuntimeError):
        return None
    import torch.distributed

    text = str(err).strip()
    if not (isinstance(err, torch.distributed.DistError) or COLLECTIVE_FAILURE.search(text)):
        return None
    line = text.splitlines()[0] if text else type(err).__name__
    reason = re.sub(r"^\[[^\]]*\]\s*", "", line).split(". This is typically")[0]  # gloo's source position, advice
    return ProcessLost(f"process {dist.rank} of {dist.world}: another process of this run died or stopped answering "
                       f"({reason})")


def init() -> Dist:
    """An active Dist under `accelerate launch`/torchrun with several processes; otherwise inactive."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    from accelerate import Accelerator

    accelerator = Accelerator()
    return Dist(accelerator)


def check(dist: Dist, cfg) -> None:
    """Settings a strategy cannot honour, as one clear error before any work."""
    if not dist.active:
        return
    kind = dist.accelerator.distributed_type.name
    if cfg.train.fsdp and kind in ("DEEPSPEED", "FSDP", "MEGATRON_LM", "XLA"):
        raise UserError(f"train.fsdp shards the policy itself (torch FSDP2), but accelerate's config already "
                        f"distributes it with {kind}: launch with a DDP config (configs/accelerate/ddp.yaml) or "
                        "set train.fsdp=false")
    if kind == "DEEPSPEED" and cfg.train.grad_accum != 1:
        raise UserError("DeepSpeed accumulates gradients itself: run with train.grad_accum=1 (raise "
                        "train.batch_size instead)")


def batched(dist: Dist, store: RunStore, folder: Path, items: list, batch_size: int,
            work: Callable[[list], list[dict]], progress: Progress | None = None) -> list[dict]:
    """`RunStore.batched` with the unfinished batches dealt round-robin to processes."""
    if not dist.active:
        return store.batched(folder, items, batch_size, work, progress)
    starts = list(range(0, len(items), batch_size))
    paths = [store.batch_path(folder, k) for k in range(len(starts))]
    # a damaged file reads as missing on every process (the writer removes it, after which it is missing)
    have = {k: saved for k, (path, start) in enumerate(zip(paths, starts))
            if (saved := store.read_batch(path, len(items[start:start + batch_size]),
                                          items[start:start + batch_size])) is not None}
    todo = [k for k in range(len(starts)) if k not in have]
    mine = {k: work(items[starts[k]:starts[k] + batch_size]) for k in todo[dist.rank::dist.world]}
    done: dict[int, list[dict]] = {}
    for part in dist.gather(mine):
        done.update(part)
    for k in sorted(done):
        store.write_jsonl(paths[k], done[k])  # main process only
    rows: list[dict] = []
    for k, start in enumerate(starts):
        rows.extend(done[k] if k in done else have[k])
        if progress is not None:
            progress.update(len(items[start:start + batch_size]))
    dist.barrier()
    return rows
