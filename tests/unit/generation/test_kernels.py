"""The decode loop's CPU kernels against the plain ones they replace."""

import pytest
import torch
import torch.nn.functional as F

from optune.generation.kernels import _gqa_sdpa, onednn_available, pack_linear, packed_linears

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


def test_grouped_attention_equals_repeated_keys_and_values():
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal, module.training = 3, True, False
    query, key, value = torch.randn(4, 6, 1, 16), torch.randn(4, 2, 9, 16), torch.randn(4, 2, 9, 16)
    mask = torch.ones(4, 1, 1, 9, dtype=torch.bool)
    mask[1, ..., :4] = False
    got, _ = _gqa_sdpa(module, query, key, value, mask, scaling=0.25)
    expected, _ = sdpa_attention_forward(module, query, key, value, mask, scaling=0.25)
    assert torch.allclose(got, expected, atol=1e-6)
