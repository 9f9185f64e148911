"""The decode loop's CPU kernels against the plain ones they replace."""

import pytest
import torch
import torch.nn.functional as F

from optune.generation.kernels import cascade_step, onednn_available, pack_linear, packed_linears

needs_onednn = pytest.mark.skipif(not onednn_available(), reason="this PyTorch has no oneDNN linear operators")


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 48), (3, 7, 48), (1, 1, 48)])
def test_packed_linear_equals_the_plain_one(bias, shape):
    torch.manual_seed(0)
    layer = torch.nn.Linear(48, 80, bias=bias)
    x = torch.randn(*shape)
    with torch.inference_mode():
        got, expected = pack_linear(layer, 8)(x), F.linear(x, layer.weight, layer.bias)
    assert got.shape == expected.shape and torch.allclose(got, expected, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_packed_linears_restore_the_model():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    x = torch.randn(2, 8)
    expected = model(x)
    with pytest.raises(RuntimeError, match="inside"), torch.inference_mode():
        with packed_linears(model):
            assert all("forward" in vars(m) for m in model if isinstance(m, torch.nn.Linear))
            assert torch.allclose(model(x), expected, atol=1e-6)
            raise RuntimeError("inside")
    assert not any("forward" in vars(m) for m in model)
    assert torch.equal(model(x), expected)


@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_cascade_step_equals_attention_over_repeated_padded_keys(n, subset):
    """The same as sdpa over each row's own copy [prompt | generated], padding masked, groups repeated."""
    gen = torch.Generator().manual_seed(n)
    prompts, kv_heads, g, width, steps, dim = 2, 2, 3, 7, 4, 16
    rows = torch.arange(1, prompts * n, 2) if subset else None  # finished rows left the batch
    batch = prompts * n if rows is None else len(rows)
    original = torch.arange(prompts * n) if rows is None else rows
    query = torch.randn(batch, kv_heads * g, 1, dim, generator=gen)
    gen_keys, gen_values = (torch.randn(batch, kv_heads, steps, dim, generator=gen) for _ in range(2))
    prompt_keys, prompt_values = (torch.randn(prompts, kv_heads, width, dim, generator=gen) for _ in range(2))
    visible = torch.ones(prompts, width, dtype=torch.bool)
    visible[1, :3] = False  # padding of the second prompt
    bias = torch.zeros(prompts, 1, 1, width).masked_fill(~visible.view(prompts, 1, 1, width), float("-inf"))
    got = cascade_step(query, gen_keys, gen_values, prompt_keys, prompt_values, bias, n, rows, 0.3)
    prompt_of = original // n
    keys = torch.cat([prompt_keys[prompt_of], gen_keys], 2).repeat_interleave(g, 1)
    values = torch.cat([prompt_values[prompt_of], gen_values], 2).repeat_interleave(g, 1)
    mask = torch.cat([visible[prompt_of], torch.ones(batch, steps, dtype=torch.bool)], 1).view(batch, 1, 1, -1)
    expected = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask, scale=0.3).transpose(1, 2)
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-5)


def test_cascade_step_in_bfloat16():
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(4, 6, 1, 16, generator=gen)
    gen_kv = [torch.randn(4, 2, 3, 16, generator=gen) for _ in range(2)]
    prompt_kv = [torch.randn(2, 2, 5, 16, generator=gen) for _ in range(2)]
    bias = torch.zeros(2, 1, 1, 5)
    expected = cascade_step(query, *gen_kv, *prompt_kv, bias, 2, None, 0.25)
    got = cascade_step(query.bfloat16(), *(t.bfloat16() for t in gen_kv + prompt_kv), bias.bfloat16(), 2, None, 0.25)
    assert got.dtype == torch.bfloat16 and torch.allclose(got.float(), expected, atol=0.05)
