"""CPU kernels for the decode loop, each a context manager that leaves the model as it was afterwards.

- `cascade_attention`: at a decode step, each row attends to its prompt's keys/values (one copy per prompt,
  shared by the prompt's n rows: read once, as n x g query heads of one matmul) and to its own generated
  ones, in one softmax (`cascade_step`). transformers' sdpa path would instead read a padded, repeated copy
  per row and, with a padding mask, first copy the keys/values of grouped-query attention to every query
  head (`repeat_kv`). On a CPU, attention at decode time is bound by reading keys and values.
- `packed_linears`: the model's float32 linear layers run oneDNN's matmul on weights packed once per call
  (the layout oneDNN wants, made ahead instead of at every call) instead of MKL's sgemm on the weights as
  stored: measured 20% less CPU time for a decode call of the embedded model (docs/benchmarks.md). Both are
  float32 with float32 accumulation, in different summation orders, so the logits differ from the training
  forward pass's by rounding (sampler log-probs: up to ~2e-4 nats per 64-token sequence instead of ~8e-5),
  which is why the decode loop leaves them off when its log-probs serve as DPO references.
`packed_linears` uses PyTorch operators that exist only where PyTorch was built with oneDNN (`torch.ops.mkldnn`); where
they are missing the plain path runs.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import cast

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

_CASCADE_ATTENTION = "optune_cascade"


@dataclass
class Cascade:
    """What a decode step's attention reads besides the generated part the cache hands it."""

    prompts: list[tuple[torch.Tensor, torch.Tensor]]
    """Per layer, the prompts' keys and values [P, H, W, D] (one copy per prompt)."""
    bias: torch.Tensor
    """[P, 1, 1, W] 0 on prompt columns, -inf on padding."""
    n: int
    """Rows per prompt: row r is sample r % n of prompt r // n."""
    rows: torch.Tensor | None = None
    """[B] the original row of each row in the batch (finished rows leave it); None: all, in order."""


def cascade_step(query: torch.Tensor, gen_keys: torch.Tensor, gen_values: torch.Tensor, prompt_keys: torch.Tensor,
                 prompt_values: torch.Tensor, bias: torch.Tensor, n: int, rows: torch.Tensor | None,
                 scale: float) -> torch.Tensor:
    """Attention of one new token per row over its prompt's keys/values and its own generated ones.

    query [B, heads, 1, D]; gen_keys/gen_values [B, H, t, D] (H key/value heads, heads = H * g);
    prompt_keys/prompt_values [P, H, W, D]; bias [P, 1, 1, W]; rows [B] original rows (None: B = P * n, in
    order). Returns [B, 1, heads, D] (transformers' attention output layout). The n rows of a prompt meet
    its keys as n * g query heads of one matmul, so they are read once.
    """
    rows_, heads, _, dim = query.shape
    prompts, kv_heads, width, _ = prompt_keys.shape
    g, slots = heads // kv_heads, prompts * n
    q = query.view(rows_, kv_heads, g, dim)
    every = rows is None or len(rows) == slots
    rows = cast(torch.Tensor, rows)  # read only where not `every`, and then it is given
    full = q if every else q.new_zeros(slots, kv_heads, g, dim).index_copy_(0, rows, q)
    qp = full.view(prompts, n, kv_heads, g, dim).transpose(1, 2).reshape(prompts, kv_heads, n * g, dim)
    scores = torch.matmul(qp, prompt_keys.transpose(-1, -2)).mul_(scale).add_(bias)  # [P, H, n * g, W]
    scores = scores.view(prompts, kv_heads, n, g, width).transpose(1, 2).reshape(slots, kv_heads, g, width)
    scores = scores if every else scores.index_select(0, rows)
    own = torch.matmul(q, gen_keys.transpose(-1, -2)).mul_(scale)  # [B, H, g, t]
    probs = torch.cat([scores, own], dim=-1).softmax(-1)
    to_prompt = probs[..., :width]
    if not every:
        to_prompt = probs.new_zeros(slots, kv_heads, g, width).index_copy_(0, rows, to_prompt)
    to_prompt = to_prompt.reshape(prompts, n, kv_heads, g, width).transpose(1, 2)
    to_prompt = to_prompt.reshape(prompts, kv_heads, n * g, width)
    out = torch.matmul(to_prompt, prompt_values).view(prompts, kv_heads, n, g, dim).transpose(1, 2)
    out = out.reshape(slots, kv_heads, g, dim)
    out = (out if every else out.index_select(0, rows)) + torch.matmul(probs[..., width:], gen_values)
    return out.reshape(rows_, heads, dim).unsqueeze(1)


def _attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
               optune_cascade: Cascade | None = None, **kwargs):
    """transformers' sdpa attention, or `cascade_step` at the decode loop's steps."""
    if optune_cascade is None or query.shape[2] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    prompt_keys, prompt_values = optune_cascade.prompts[module.layer_idx]
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return cascade_step(query, key, value, prompt_keys, prompt_values, optune_cascade.bias, optune_cascade.n,
                        optune_cascade.rows, scale), None


@contextlib.contextmanager
def cascade_attention(model, enabled: bool = True):
    """Inside the block an sdpa model's attention is `_attention` (sdpa unless the step passes a Cascade)."""
    config = getattr(model, "config", None)
    if not enabled or config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        yield
        return
    AttentionInterface.register(_CASCADE_ATTENTION, _attention)
    AttentionMaskInterface.register(_CASCADE_ATTENTION, sdpa_mask)
    config._attn_implementation = _CASCADE_ATTENTION
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
                setattr(module, "forward", pack_linear(module, rows))  # noqa: B010 - an instance attribute shadows Linear.forward
                patched.append(module)
        yield
    finally:
        for module in patched:
            del module.forward
