"""Measure Bradley-Terry training throughput of candidate reward backbones on this machine.

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/reward_backbone_throughput.py minilm 128 8
    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/reward_backbone_throughput.py smollm2 128 8

Runs a few AdamW steps of the BT loss on random token ids (batch B pairs = 2B sequences of L
tokens, no padding) and prints seconds and pairs per second per step. Used to choose the backbone,
sequence length and epochs in docs/benchmarks.md ("Reward model").
"""

from __future__ import annotations

import sys
import time

import torch

from optune.losses import bradley_terry_loss
from optune.rewardmodel.model import load_backbone


def main(argv: list[str]) -> None:
    backbone, length, batch = argv[0], int(argv[1]), int(argv[2])
    steps = int(argv[3]) if len(argv) > 3 else 4
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model, _ = load_backbone(backbone)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{backbone}: loaded in {time.perf_counter() - t0:.1f} s, {params:.1f} M parameters")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(100, 1000, (2 * batch, length))
    mask = torch.ones_like(ids)
    model.train()
    for step in range(steps):
        t = time.perf_counter()
        scores = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
        bradley_terry_loss(scores[:batch], scores[batch:]).mean().backward()
        opt.step()
        opt.zero_grad()
        dt = time.perf_counter() - t
        print(f"{backbone} len {length} batch {batch} step {step}: {dt:.2f} s, {batch / dt:.2f} pairs/s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
