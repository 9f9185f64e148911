"""repack_kept_weights: after vLLM's in-place reload, the CPU packing of every layer that keeps its plain weight
(the tied output layer) is redone, and layers whose packing dropped their weight are left to the reload."""

from __future__ import annotations

import torch

from optune.generation.vllm_update import repack_kept_weights


class Method:
    def process_weights_after_loading(self, layer):
        packed = layer.weight.detach().clone()  # what the CPU packing does: a copy the layer computes with
        layer.cpu_linear = lambda x, weight, bias: torch.nn.functional.linear(x, packed, bias)


def layer(rows: int, cols: int, kept: bool = True) -> torch.nn.Module:
    out = torch.nn.Module()
    out.quant_method = Method()
    out.weight = torch.nn.Parameter(torch.randn(rows, cols) if kept else torch.empty(0), requires_grad=False)
    if kept:
        out.quant_method.process_weights_after_loading(out)
    else:
        out.cpu_linear = lambda x, weight, bias: x
    return out


def test_a_tied_output_layer_computes_with_the_new_weight_after_repacking():
    model = torch.nn.Module()
    model.embed = layer(8, 4)
    model.head = layer(8, 4)
    model.head.weight = model.embed.weight  # tied: one tensor under two layers
    model.proj = layer(4, 4, kept=False)  # packing dropped its weight: the reload repacked it already
    model.norm = torch.nn.LayerNorm(4)  # no quant_method: not a packed layer
    x = torch.randn(3, 4)
    with torch.no_grad():
        model.embed.weight.add_(1.0)  # the reload copies new values into the shared tensor
    stale = model.head.cpu_linear(x, None, None)
    assert not torch.allclose(stale, x @ model.embed.weight.T)
    assert repack_kept_weights(model) == ["embed", "head"]
    assert torch.equal(model.head.cpu_linear(x, None, None), x @ model.embed.weight.T)


def test_nothing_is_repacked_off_the_cpu():
    model = torch.nn.Module()
    model.head = layer(8, 4)
    del model.head.cpu_linear  # GPU layers compute from their weight: nothing packed
    assert repack_kept_weights(model) == []
