"""LoRA on the tiny policy: reference = adapter disabled, low-rank updates only, adapters merge back."""

import copy

import pytest
import torch

pytest.importorskip("peft")

from optune.config.run import LoraConfig, TrainConfig
from optune.errors import UserError
from optune.losses import make_loss
from optune.models import lora
from optune.models.policy import load_model
from optune.training import reference_logps, train_iteration
from optune.training.reference import References
from optune.training.update import TrainHooks, TrainInputs
from tests.unit.training.test_update import make_pairs

CFG = LoraConfig(r=2, alpha=4.0, target_modules=["q_proj", "v_proj"])
TRAIN = TrainConfig(optimizer="adamw", lr=5e-2, warmup_ratio=0.0, lr_schedule="constant", batch_size=4,
                    grad_accum=1, epochs=3, bf16=False)


def trained(tiny_policy):
    base = load_model(tiny_policy)
    before = copy.deepcopy(base.state_dict())
    pairs = make_pairs(8)
    model = lora.attach(base, CFG)
    with lora.adapter_disabled(model):
        ref = reference_logps(model, pairs, 0, 8, False)
    log = []
    train_iteration(model, TrainInputs(pairs, References.of(*ref), 0, seed=0), TRAIN, make_loss("dpo", 0.5),
                    TrainHooks(log=log.append))
    return model, before, pairs, ref, log


def test_reference_is_the_model_with_adapter_disabled(tiny_policy):
    model, _, pairs, ref, log = trained(tiny_policy)
    assert abs(log[0]["rewards/margins"]) < 1e-6  # fresh adapter: the policy starts exactly at the reference
    with lora.adapter_disabled(model):
        again = reference_logps(model, pairs, 0, 8, False)
    plain = load_model(tiny_policy)
    assert torch.allclose(torch.tensor(again[0]), torch.tensor(ref[0]), atol=1e-5)
    assert torch.allclose(torch.tensor(reference_logps(plain, pairs, 0, 8, False)[0]), torch.tensor(ref[0]), atol=1e-5)
    trained_c = reference_logps(model, pairs, 0, 8, False)[0]
    assert not torch.allclose(torch.tensor(trained_c), torch.tensor(ref[0]), atol=1e-3), "the adapter must train"


def test_merged_update_is_low_rank_and_only_on_targets(tiny_policy, tmp_path):
    model, before, *_ = trained(tiny_policy)
    merged = lora.save_merged(model, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").is_file()
    assert all(p.requires_grad for p in merged.parameters())
    after = merged.state_dict()
    assert set(after) == set(before)
    moved = {k for k in after if not torch.equal(after[k], before[k])}
    assert moved and all(k.endswith(("q_proj.weight", "v_proj.weight")) for k in moved), moved
    for k in moved:
        assert torch.linalg.matrix_rank(after[k] - before[k], atol=1e-6) <= CFG.r
    # the saved adapter on top of the base rebuilds the merged checkpoint
    lora.merge_adapter(tiny_policy, str(tmp_path / "ckpt" / "adapter"), str(tmp_path / "rebuilt"))
    rebuilt = load_model(str(tmp_path / "rebuilt")).state_dict()
    for k in moved:
        assert torch.allclose(rebuilt[k], after[k], atol=1e-6)


def test_bad_target_modules(tiny_policy):
    with pytest.raises(UserError, match="lora.target_modules"):
        lora.attach(load_model(tiny_policy), LoraConfig(r=2, target_modules=["no_such_layer"]))
