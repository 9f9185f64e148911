"""CPU kernels for the decode loop, each a context manager that leaves the model as it was afterwards.

- `grouped_attention`: transformers' sdpa path copies the keys and values of grouped-query attention to
  every query head (`repeat_kv`) whenever there is a padding mask, i.e. at every decode step of a padded
  batch; the CPU kernel takes the groups as they are (`enable_gqa`).
- `packed_linears`: the model's float32 linear layers run oneDNN's matmul on weights packed once per call
  (the layout oneDNN wants, made ahead instead of at every call) instead of MKL's sgemm on the weights as
  stored: measured 20% less CPU time for a decode call of the embedded model (docs/benchmarks.md). Both are
  float32 with float32 accumulation, in different summation orders, so the logits differ from the training
  forward pass's by rounding (sampler log-probs: up to ~2e-4 nats per 64-token sequence instead of ~8e-5),
  which is why the decode loop leaves them off when its log-probs serve as DPO references.
Both use PyTorch operators that exist only where PyTorch was built with oneDNN (`torch.ops.mkldnn`); where
they are missing the plain path runs.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

_GQA_ATTENTION = "optune_sdpa_gqa"


def _gqa_sdpa(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' sdpa attention, with grouped keys/values left grouped on the CPU (no repeat_kv copy)."""
    groups = getattr(module, "num_key_value_groups", 1)
    if query.device.type != "cpu" or groups == 1 or attention_mask is None or query.shape[2] > 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, is_causal=is_causal, **kwargs)
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling,
                                         enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


@contextlib.contextmanager
def grouped_attention(model):
    """Route the model's sdpa attention through `_gqa_sdpa` for the duration of the call."""
    config = getattr(model, "config", None)
    if config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        yield
        return
    AttentionInterface.register(_GQA_ATTENTION, _gqa_sdpa)
    AttentionMaskInterface.register(_GQA_ATTENTION, sdpa_mask)
    config._attn_implementation = _GQA_ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"


def onednn_available() -> bool:
    """Whether this PyTorch has oneDNN's packed linear operators (CPU builds with mkldnn)."""
    ops = torch.ops.mkldnn
    try:
        return torch.backends.mkldnn.is_available() and all(
            callable(getattr(ops, name)) for name in ("_reorder_linear_weight", "_linear_pointwise"))
    except (AttributeError, RuntimeError):
        return False


def _packed_linear(weight: torch.Tensor, bias: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def pack_linear(module: torch.nn.Linear, rows: int):
    """A function x -> module(x) on oneDNN with the weight packed now (rows: the expected batch rows)."""
    weight = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), rows)
    bias = None if module.bias is None else module.bias.detach()
    return functools.partial(_packed_linear, weight, bias)


@contextlib.contextmanager
def packed_linears(model, enabled: bool = True, rows: int = 64):
    """Plain float32 nn.Linear layers of a CPU model run on packed oneDNN weights inside the block."""
    device = next(model.parameters()).device
    if not enabled or device.type != "cpu" or not onednn_available():
        yield
        return
    patched = []
    try:
        for module in model.modules():
            if type(module) is torch.nn.Linear and module.weight.dtype == torch.float32:
                module.forward = pack_linear(module, rows)  # an instance attribute shadows Linear.forward
                patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward
