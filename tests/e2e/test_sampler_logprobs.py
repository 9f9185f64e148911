"""`optune run` with the transformers backend's decode loop and generation.sampler_logprobs: the reference
log-probs of fresh pairs come from the sampler, and they equal a float32 forward pass of the policy that
sampled them (pi_0 at iteration 0, pi_1 at iteration 1) within 1e-4 nats per sequence."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.e2e.references import forward_reference, rows

pytestmark = pytest.mark.slow


def test_sampler_logprobs_are_the_reference_with_the_transformers_backend(tmp_path):
    from optune.models.tiny import build_tiny_policy

    policy = build_tiny_policy(tmp_path / "policy")
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "optune.cli", "run", "-c", str(REPO / "configs" / "tiny.yaml"), f"output_dir={run}",
           f"policy.model={policy}", "generation.impl=decode", "generation.sampler_logprobs=true",
           "eval.heldout=false", "train.lr=0.01"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for t, model in ((0, str(policy)), (1, str(run / "iter_000" / "checkpoint"))):
        it = run / f"iter_{t:03d}"
        for row in (r for f in sorted((it / "gen").iterdir()) for r in rows(f)):
            assert all(s["logp"] < 0 for s in row["samples"])
        ref = json.loads((it / "ref_logps.json").read_text())
        fresh = sum(1 for p in rows(it / "pairs.jsonl") if p["trained"] and p["chosen_generated_at"] == t)
        assert ref["from_sampler"] == fresh > 0
        got, expected = ref["chosen"] + ref["rejected"], forward_reference(model, run, t)
        assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-4, (t, got, expected)
    stale = forward_reference(str(policy), run, 1)
    got = json.loads((run / "iter_001" / "ref_logps.json").read_text())
    assert max(abs(a - b) for a, b in zip(got["chosen"] + got["rejected"], stale)) > 1e-2, \
        "iteration 1 must sample from the trained policy, not pi_0"
