"""Sharded training with torch's FSDP2 (`train.fsdp=true` with several processes: torchrun / accelerate launch).

Each decoder block (the classes a transformers model names in `_no_split_modules`) and then the whole model
are `fully_shard`-ed over all processes: every process holds 1/N of each parameter as a DTensor shard, its
gradient is reduce-scattered into the same shard, and the optimizer, built on the sharded parameters, keeps
its state (momentum, averages) for that shard only. A block's full weights exist only while it runs.

optune.distributed calls it (Dist.prepare shards when asked); the rest of training is unchanged: the loss is
scaled by the world size because the reduce-scatter averages, as DDP's all-reduce does. Checkpoints are
gathered whole (`full_state_dict`) into a plain transformers checkpoint on the main process. Tested on CPU
processes over gloo (tests/e2e/test_fsdp.py); the same calls run on GPUs over NCCL.
"""

from __future__ import annotations

import torch


def blocks(model) -> list[torch.nn.Module]:
    """The model's repeated blocks (decoder layers): each becomes one unit of gathering and freeing."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names and m is not model]


def shard(model, device: torch.device, world: int):
    """`model`, moved to `device` and fully sharded over `world` processes (in place: its parameters become
    DTensor shards, so build the optimizer after this)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    model.to(device)
    mesh = init_device_mesh(device.type, (world,))
    for block in blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model) -> bool:
    """Whether `model` is sharded with FSDP2 (never without a process group: one process pays no import)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_state_dict(model) -> dict:
    """The unsharded weights on the main process's CPU (an empty dict elsewhere); a collective: every process
    must call it. A tied weight (the output projection sharing the embedding) is kept under its first name only,
    as an unsharded model's save_pretrained keeps it: the gathered copies are no longer one tensor, which is how
    transformers tells tied weights apart."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    first: dict[int, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if first.setdefault(id(param), name) != name:
            state.pop(name, None)
    return state


def clip_grad_norm(parameters, max_norm: float) -> float:
    """torch's clip_grad_norm_ for sharded gradients: the norm of the whole gradient (its shards' norms
    all-reduced), then every shard scaled by the same factor."""
    from torch.distributed.tensor import DTensor

    params = [p for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)


def local_bytes(model, optimizer) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer state held by this process (a shard's local part only)."""
    def size(t) -> int:
        local = t.to_local() if hasattr(t, "to_local") else t
        return local.numel() * local.element_size()

    params = list(model.parameters())
    state = [v for entry in optimizer.state.values() for v in entry.values()
             if isinstance(v, torch.Tensor) and v.dim()]
    return {"params": sum(size(p) for p in params), "grads": sum(size(p.grad) for p in params if p.grad is not None),
            "optimizer": sum(size(v) for v in state)}
