"""Two CPU processes (DDP over gloo via `accelerate launch`) against one process with the same global batch."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.slow

# one optimizer step over all pairs (at most 8): SGD so the update is linear in the gradient
COMMON = ["iterations=1", "train.optimizer=sgd", "train.lr=0.5", "train.warmup_ratio=0", "train.lr_schedule=constant",
          "train.epochs=1", "train.max_grad_norm=null", "train.batch_size=2", "generation.batch_size=4"]


def launch(run: Path, processes: int, grad_accum: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    args = ["-m", "optune", "run", "-c", str(REPO / "configs" / "tiny.yaml"), f"output_dir={run}",
            f"train.grad_accum={grad_accum}", *COMMON]
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        accelerate = shutil.which("accelerate") or pytest.skip("accelerate's launcher is not on PATH")
        cmd = [accelerate, "launch", "--config_file", str(REPO / "configs" / "accelerate" / "ddp_cpu.yaml"),
               "--num_processes", str(processes), "--main_process_port", str(29500 + os.getpid() % 1000), *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400, check=False)


def test_two_processes_equal_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert (proc := launch(one, 1, grad_accum=4)).returncode == 0, proc.stderr[-3000:]
    assert (proc := launch(two, 2, grad_accum=2)).returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("iter 0:") == 1, "only the main process reports"
    assert [json.loads((r / "versions.json").read_text())["processes"] for r in (one, two)] == [1, 2]
    # generation and scoring were split over the processes but give the same responses and pairs
    for name in ("responses.jsonl", "pairs.jsonl", "heldout.jsonl", "heldout_start.jsonl"):
        assert (one / "iter_000" / name).read_text() == (two / "iter_000" / name).read_text(), name
    ref = [json.loads((r / "iter_000" / "ref_logps.json").read_text()) for r in (one, two)]
    assert torch.allclose(torch.tensor(ref[0]["chosen"]), torch.tensor(ref[1]["chosen"]), atol=1e-5)
    log = [json.loads((r / "iter_000" / "checkpoint" / "train_log.jsonl").read_text()) for r in (one, two)]
    assert log[0]["step"] == log[1]["step"] == 0 and abs(log[0]["loss"] - log[1]["loss"]) < 1e-5
    from safetensors.torch import load_file

    start = load_file(str(Path(os.environ["OPTUNE_CACHE"]) / "models" / "tiny-llama" / "model.safetensors"))
    a = load_file(str(one / "iter_000" / "checkpoint" / "model.safetensors"))
    b = load_file(str(two / "iter_000" / "checkpoint" / "model.safetensors"))
    moved = 0
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6, rtol=1e-4), key
        moved += not torch.allclose(a[key], start[key])
    assert moved > 0, "the update must move the parameters"
    assert not [p for p in two.rglob(".*") if p.name != ".optune-run"], "temporary files left behind"
