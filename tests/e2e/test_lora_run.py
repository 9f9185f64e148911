"""`optune run` with LoRA on the tiny policy: adapters saved per iteration, reference = pi_t each iteration."""

import json

import pytest

from optune.cli import main
from tests.conftest import REPO

pytest.importorskip("peft")
pytestmark = pytest.mark.slow


def test_tiny_run_with_lora(tmp_path):
    run = tmp_path / "run"
    code = main(["run", "-c", str(REPO / "configs" / "tiny.yaml"), f"output_dir={run}", "lora.r=4",
                 "lora.alpha=8", "lora.target_modules=[q_proj, v_proj, up_proj]", "train.lr=0.02",
                 "train.optimizer=adamw", "loss.type=dpo"])
    assert code == 0
    for t in (0, 1):
        ckpt = run / f"iter_{t:03d}" / "checkpoint"
        assert (ckpt / "model.safetensors").is_file() and (ckpt / "adapter" / "adapter_config.json").is_file()
        first = json.loads((ckpt / "train_log.jsonl").read_text().splitlines()[0])
        # the policy starts each iteration exactly at its reference: the merged pi_t with a fresh adapter
        assert abs(first["rewards/margins"]) < 1e-5 and abs(first["rewards/chosen"]) < 1e-5, (t, first)
    from optune.models.policy import load_model

    a = load_model(str(run / "iter_000" / "checkpoint")).state_dict()
    b = load_model(str(run / "iter_001" / "checkpoint")).state_dict()
    changed = {k for k in a if not (a[k] == b[k]).all()}
    assert changed and all(k.endswith(("q_proj.weight", "v_proj.weight", "up_proj.weight")) for k in changed)
