"""FSDP2 sharding in one process (a world of 1 over gloo): what it shards, the gathered weights, the clipped norm.
Two processes against one: tests/e2e/test_fsdp.py."""

import copy

import pytest
import torch

from optune.distributed import sharding


@pytest.fixture
def model(tiny_policy):
    from optune.models.policy import load_model

    return load_model(tiny_policy)


@pytest.fixture
def world_of_one():
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_blocks_are_the_decoder_layers(model):
    assert [type(b).__name__ for b in sharding.blocks(model)] == ["LlamaDecoderLayer"] * 2
    assert not sharding.is_sharded(model)  # no process group: not even an import


def test_sharded_model_gathers_and_clips_as_the_plain_one(model, world_of_one):
    plain = copy.deepcopy(model)
    sharded = sharding.shard(model, torch.device("cpu"), 1)
    assert sharding.is_sharded(sharded) and not sharding.is_sharded(plain)
    state = sharding.full_state_dict(sharded)
    expected = {k: v for k, v in plain.state_dict().items() if k != "lm_head.weight"}  # tied: saved once
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    ids = torch.tensor([[1, 40, 50, 60, 2]])
    for m in (plain, sharded):
        m(input_ids=ids).logits.logsumexp(-1).sum().backward()
    norm = sharding.clip_grad_norm(sharded.parameters(), 0.01)
    assert norm == pytest.approx(float(torch.nn.utils.clip_grad_norm_(plain.parameters(), 0.01)), rel=1e-5)
    grads = dict(plain.named_parameters())
    for name, p in sharded.named_parameters():
        assert torch.allclose(p.grad.full_tensor(), grads[name].grad, atol=1e-7), name
    optimizer = torch.optim.AdamW(sharded.parameters())
    optimizer.step()
    held = sharding.local_bytes(sharded, optimizer)
    whole = sum(p.numel() * 4 for p in plain.parameters())
    assert held == {"params": whole, "grads": whole, "optimizer": 2 * whole}  # world 1: a shard is everything
