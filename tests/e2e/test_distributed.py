"""Two CPU processes (DDP over gloo via `accelerate launch`) against one process with the same global batch, and
what the others do when one process dies."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.slow

# one optimizer step over all pairs (at most 8): SGD so the update is linear in the gradient
COMMON = ["iterations=1", "train.optimizer=sgd", "train.lr=0.5", "train.warmup_ratio=0", "train.lr_schedule=constant",
          "train.epochs=1", "train.max_grad_norm=null", "train.batch_size=2", "generation.batch_size=4"]


def launch(run: Path, processes: int, grad_accum: int, extra: tuple[str, ...] = (), resume: bool = False,
           wait: bool = True):
    """`optune run` of the tiny config in one process or under `accelerate launch` (CPU, gloo); `resume`: resume
    `run` instead; `wait=False`: the running launcher (a Popen in its own process group), not its result."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    args = (["-m", "optune", "run", "--resume", str(run)] if resume else
            ["-m", "optune", "run", "-c", str(REPO / "configs" / "tiny.yaml"), f"output_dir={run}",
             f"train.grad_accum={grad_accum}", *COMMON, *extra])
    if processes == 1:
        cmd = [sys.executable, *args]
    else:
        accelerate = shutil.which("accelerate") or pytest.skip("accelerate's launcher is not on PATH")
        cmd = [accelerate, "launch", "--config_file", str(REPO / "configs" / "accelerate" / "ddp_cpu.yaml"),
               "--num_processes", str(processes), "--main_process_port", str(29500 + os.getpid() % 1000), *args]
    if not wait:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
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


def test_a_dead_process_stops_every_other_with_one_line(tmp_path):
    """SIGKILL rank 1 of a 2-process run (ranks started as torchrun starts them): rank 0 stops within a bounded
    time with exit 3 and one line naming the cause and the resume command, no traceback, no hang."""
    run, port = tmp_path / "run", str(29000 + os.getpid() % 400)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true",
               WORLD_SIZE="2", LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    args = [sys.executable, "-m", "optune", "run", "-c", str(REPO / "configs" / "tiny.yaml"), f"output_dir={run}",
            "iterations=3"]
    ranks = [subprocess.Popen(args, cwd=REPO, env=dict(env, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    try:
        deadline = time.monotonic() + 300
        while not (run / "iter_000" / "responses.jsonl").exists() and time.monotonic() < deadline:
            assert ranks[0].poll() is None, ranks[0].communicate()[1][-3000:]
            time.sleep(0.02)
        ranks[1].kill()
        start = time.monotonic()
        out, err = ranks[0].communicate(timeout=120)
        assert time.monotonic() - start < 60, "the survivor took too long to notice"
    finally:
        for proc in ranks:
            proc.kill()
            proc.communicate()
    assert ranks[0].returncode == 3, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("optune run")]
    assert len(lines) == 1 and "process 0 of 2: another process of this run died" in lines[0], err[-3000:]
    assert f"--resume {run}" in lines[0]
    assert out.count("optune run:") == 1
