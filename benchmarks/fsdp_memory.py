"""Per-process training state under FSDP2 (`train.fsdp`): parameter, gradient and optimizer-state bytes that one
process holds, for 1 and 2 real CPU processes (torchrun, gloo) and N simulated ones.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/fsdp_memory.py [--processes 1,2] [--simulate 1,2,8]
        [--optimizer adamw] [--tiny]

Model: a random Llama of SmolLM2-135M-Instruct's shape (the embedded policy: hidden 576, 30 layers, vocab
49152, tied embeddings; nothing downloaded), or with --tiny the tests' tiny Llama. Each real process builds
it, shards it as `optune.distributed.sharding.shard` does (every decoder layer, then the whole model; not
with one process, which trains it whole as optune does), builds the optimizer on the result, runs one
forward/backward on 2 random sequences of 32 tokens and one optimizer step, and reports the bytes of its
local parameters, gradients and optimizer state (`optune.distributed.sharding.local_bytes`; the largest over
processes is shown).
Simulated rows are what fully_shard gives each process without running it: every parameter split along its
first dimension in chunks of ceil(rows / N) (rank 0 holds a full chunk, the largest share), gradients the same,
and the optimizer's state per parameter (AdamW: two tensors of the shard's shape, RMSprop one, SGD none).
Activations and the transient all-gathered layer are not counted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

STATES = {"adamw": 2, "rmsprop": 1, "sgd": 0}
"""Optimizer-state tensors of a parameter's shape per parameter (scalars such as the step count aside)."""


def build(tiny: bool):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = (dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=259) if tiny else
             dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3, vocab_size=49152))
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**shape, tie_word_embeddings=True))


def make_optimizer(params, name: str):
    import torch

    kinds = {"adamw": torch.optim.AdamW, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}
    return kinds[name](params, lr=1e-5)


def worker(args) -> None:
    """One process of a torchrun launch: shard, one step, and the bytes it holds (rank 0 prints all ranks')."""
    import torch
    import torch.distributed as dist

    from optune.distributed import sharding

    world = int(os.environ.get("WORLD_SIZE", "1"))
    model = build(args.tiny)
    if world > 1:
        dist.init_process_group("gloo")
        model = sharding.shard(model, torch.device("cpu"), world)
    optimizer = make_optimizer(model.parameters(), args.optimizer)
    ids = torch.randint(3, 200, (2, 32), generator=torch.Generator().manual_seed(1))
    model(input_ids=ids).logits.logsumexp(-1).mean().backward()
    optimizer.step()
    mine = sharding.local_bytes(model, optimizer)
    held = [mine] * world
    if world > 1:
        dist.all_gather_object(held, mine)
        dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        print("RESULT " + json.dumps(max(held, key=lambda h: sum(h.values()))), flush=True)


def measure(processes: int, args) -> dict[str, int]:
    """The worker's bytes, run in `processes` fresh processes (torchrun for more than one)."""
    flags = ["--worker", "--optimizer", args.optimizer] + (["--tiny"] if args.tiny else [])
    script = os.path.abspath(__file__)
    cmd = ([sys.executable, script, *flags] if processes == 1 else
           [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes), "--master_port",
            str(29400 + os.getpid() % 500), script, *flags])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"{processes} processes failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[0].removeprefix("RESULT "))


def simulate(processes: int, args) -> dict[str, int]:
    """Rank 0's bytes under fully_shard over `processes` (see the module docstring), without running it."""
    model = build(args.tiny)
    unique = {id(p): p for p in model.parameters()}.values()  # a tied weight is one parameter
    shard = sum(math.ceil(p.shape[0] / processes) * (p.numel() // p.shape[0]) * p.element_size() for p in unique)
    return {"params": shard, "grads": shard, "optimizer": STATES[args.optimizer] * shard}


def table(rows: list[tuple[int, str, dict[str, int]]]) -> str:
    mib = 2**20
    whole = next(sum(h.values()) for n, _, h in rows if n == 1)
    out = ["| processes | how | params MiB | grads MiB | optimizer MiB | total MiB | of 1 process |",
           "|---|---|---|---|---|---|---|"]
    for n, how, held in rows:
        total = sum(held.values())
        out.append(f"| {n} | {how} | {held['params'] / mib:.1f} | {held['grads'] / mib:.1f} | "
                   f"{held['optimizer'] / mib:.1f} | {total / mib:.1f} | {total / whole:.3f} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", default="1,2", help="real process counts (comma-separated)")
    parser.add_argument("--simulate", default="1,2,8", help="simulated process counts (comma-separated)")
    parser.add_argument("--optimizer", default="adamw", choices=sorted(STATES))
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny Llama instead of SmolLM2-135M's shape")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    rows = [(int(n), "measured", measure(int(n), args)) for n in args.processes.split(",") if n]
    rows += [(int(n), "simulated", simulate(int(n), args)) for n in args.simulate.split(",") if n]
    rows.sort(key=lambda r: (r[0], r[1]))
    print(f"model: {'tiny Llama' if args.tiny else 'random Llama of SmolLM2-135M shape'}, optimizer {args.optimizer}")
    print(table(rows))


if __name__ == "__main__":
    main()
