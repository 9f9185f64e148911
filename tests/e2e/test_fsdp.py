"""Sharded training (train.fsdp: torch FSDP2 over 2 CPU processes, gloo) against one process with the same global
batch; its checkpoints are plain transformers checkpoints, and a run killed midway resumes to the same result."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.e2e.test_distributed import launch

pytestmark = pytest.mark.slow

# clipping on (a small norm): the whole gradient's norm must be the shards' norms combined
SHARDED = ("train.fsdp=true", "train.max_grad_norm=0.05")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process (grad_accum 4) and two sharded processes (grad_accum 2): the same 8 pairs in one step."""
    root = tmp_path_factory.mktemp("fsdp")
    one, two = root / "one", root / "two"
    assert (proc := launch(one, 1, 4, extra=SHARDED)).returncode == 0, proc.stderr[-3000:]
    assert (proc := launch(two, 2, 2, extra=(*SHARDED, "iterations=2"))).returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("iter 0:") == 1 and proc.stdout.count("done:") == 1, "only the main process reports"
    return one, two


def weights(run: Path, t: int = 0) -> dict[str, torch.Tensor]:
    return load_file(str(run / f"iter_{t:03d}" / "checkpoint" / "model.safetensors"))


def test_sharded_update_equals_one_process(runs):
    one, two = runs
    log = [json.loads((r / "iter_000" / "checkpoint" / "train_log.jsonl").read_text()) for r in (one, two)]
    assert abs(log[0]["grad_norm"] - log[1]["grad_norm"]) < 1e-5 and log[0]["grad_norm"] > 0.05, "clipping applied"
    start = load_file(str(Path(os.environ["OPTUNE_CACHE"]) / "models" / "tiny-llama" / "model.safetensors"))
    a, b = weights(one), weights(two)
    assert set(a) == set(b), "the same tensors (a tied weight saved once)"
    assert all(torch.allclose(a[k], b[k], atol=1e-5, rtol=0) for k in a)
    assert any(not torch.allclose(a[k], start[k]) for k in a), "the update must move the parameters"


def test_gathered_checkpoint_is_a_plain_transformers_checkpoint(runs):
    from transformers import AutoModelForCausalLM

    one, two = runs
    config = json.loads((two / "iter_000" / "checkpoint" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    model = AutoModelForCausalLM.from_pretrained(two / "iter_000" / "checkpoint", dtype=torch.float32)
    plain = AutoModelForCausalLM.from_pretrained(one / "iter_000" / "checkpoint", dtype=torch.float32)
    ids = torch.tensor([[1, 50, 60, 70, 2]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-4)


def kill_when(proc: subprocess.Popen, path: Path, limit: float = 300) -> None:
    """SIGKILL the launcher and its processes once `path` exists (mid-run)."""
    deadline = time.monotonic() + limit
    while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sharded_run_killed_midway_resumes_to_the_same_result(runs, tmp_path):
    _, two = runs
    run = tmp_path / "run"
    proc = launch(run, 2, 2, extra=(*SHARDED, "iterations=2"), wait=False)
    kill_when(proc, run / "iter_001" / "ref_logps.json")  # iteration 1 is about to train
    assert not (run / "iter_001" / "metrics.json").exists(), "the kill landed after the run's end"
    resumed = launch(run, 2, 2, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for t in (0, 1):
        for name in ("responses.jsonl", "pairs.jsonl"):
            assert (run / f"iter_{t:03d}" / name).read_text() == (two / f"iter_{t:03d}" / name).read_text(), name
        a, b = weights(run, t), weights(two, t)
        assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a), t
    assert not [p for p in run.rglob(".*") if p.name not in (".optune-run",)], "temporary files left behind"
