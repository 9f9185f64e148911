"""The prompt pass of optune's decode loop, and the key/value cache it leaves for the decode steps.

Row r of a call is sample j of prompt i, r = i * n + j. For models on transformers' sdpa attention whose
cache is plain full attention (Llama, Qwen2, SmolLM, ...), the cache is split in two, per layer:

    prompt part      [P, H, W, D]      [common prefix | padding | rest of prompt i]   one copy per prompt
    generated part   [P * n, H, S, D]  the row's own tokens, written one column per step

- The common prefix of all prompts (the chat template's system turn: 24 of ~60 tokens on the built-in
  task) is run once, as one sequence; the rest of each prompt runs once per prompt, not once per sample,
  in chunks of prompts of similar length (sorted by length), so padding costs little.
- Padding sits between the prefix and the rest; it is masked out, and position ids skip it, so every token
  sees exactly the keys, values and positions of its own unpadded sequence.
- A decode step attends to its prompt's part and its own part (kernels.cascade_attention): the n rows of a
  prompt read one copy of its keys/values, where a batch of repeated prompts reads n (on a CPU, attention
  at decode time is bound by reading them), and nothing is concatenated (transformers' DynamicLayer copies
  the whole cache of every layer at every step).

Other models (other attention implementations, sliding windows, linear attention) take the plain path:
one padded batch of the prompts repeated n times, the model's own cache, a padding mask.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from optune.generation.base import left_pad
from optune.generation.kernels import Cascade

if TYPE_CHECKING:  # the layer kinds transformers' Cache takes (names of recent releases)
    from transformers.cache_utils import CacheLayerMixin, LinearAttentionCacheLayerMixin

PREFILL_CHUNK = 8
"""Prompts per prefill forward: enough rows for the matmuls to run at full speed on a CPU, few enough
that sorting by length leaves little padding."""


class CascadeLayer(DynamicLayer):
    """One layer's keys/values: the prompts' [P, H, W, D] and the generated tokens' [rows, H, S, D].

    `update` (one decode step) writes the next generated column and returns the generated part only; the
    attention reads the prompt part from here through `Cascade`.
    """

    is_croppable = False

    def __init__(self, prompt_keys: torch.Tensor, prompt_values: torch.Tensor, rows: int, steps: int):
        super().__init__()
        self.dtype, self.device = prompt_keys.dtype, prompt_keys.device
        self.prompt_keys, self.prompt_values = prompt_keys, prompt_values
        shape = (rows, prompt_keys.shape[1], steps, prompt_keys.shape[-1])
        self.gen_keys, self.gen_values = prompt_keys.new_empty(shape), prompt_values.new_empty(shape)
        self.length = 0
        self.keys, self.values = self.gen_keys[:, :, :0], self.gen_values[:, :, :0]
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        self.gen_keys[:, :, self.length:end] = key_states
        self.gen_values[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self.gen_keys[:, :, :end], self.gen_values[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.prompt_keys.shape[2] + self.length

    def get_max_length(self) -> int:
        return self.prompt_keys.shape[2] + self.gen_keys.shape[2]

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a cascade layer is built with its final batch")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only these rows of the generated part (finished rows leave the batch)."""
        self.gen_keys = self.gen_keys.index_select(0, indices)
        self.gen_values = self.gen_values.index_select(0, indices)
        self.keys, self.values = self.gen_keys[:, :, :self.length], self.gen_values[:, :, :self.length]


@dataclass
class Prefilled:
    logits: torch.Tensor
    """[P * n, V] float32 next-token logits after each prompt."""
    cache: Cache
    """Keys/values of the prompts, with room for the decode steps."""
    position: torch.Tensor
    """[P * n] position id of each row's first generated token (its prompt length)."""
    cascade: Cascade | None = None
    """Cascade path: what the attention needs besides the generated part."""
    mask: torch.Tensor | None = None
    """Plain path: [P * n, width + steps] attention mask (prompt columns, then ones)."""
    width: int = 0
    """Plain path: prompt columns of `mask`."""

    def step_kwargs(self, step: int, live: torch.Tensor) -> dict:
        """The model's extra inputs at decode step `step` for the rows `live` (original row indices)."""
        if self.cascade is not None:
            return {"optune_cascade": dataclasses.replace(self.cascade, rows=live)}
        if self.mask is None:
            raise ValueError("a prefill has either its cascade or its mask")
        return {"attention_mask": self.mask[live, :self.width + step + 1]}


def common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest common prefix of 2+ prompts, leaving every prompt at least one token of its own."""
    if len(prompts) < 2:
        return 0
    limit, first = min(len(p) for p in prompts) - 1, prompts[0]
    length = 0
    while length < limit and all(p[length] == first[length] for p in prompts):
        length += 1
    return length


CASCADE_MODELS = ("llama", "mistral", "qwen2", "qwen3")
"""Model types whose attention is transformers' plain scaled dot product over rotary queries/keys (no
soft-capping, no position bias in the mask), the only thing kernels.cascade_step computes; tested: llama."""


def cascade_ready(model) -> bool:
    """Whether the cascade path fits the model: a listed type on sdpa attention, a cache of plain full-attention
    layers (no sliding window)."""
    config = model.config
    if getattr(config, "model_type", None) not in CASCADE_MODELS or config._attn_implementation != "sdpa":
        return False
    return all(type(layer) is DynamicLayer for layer in DynamicCache(config=config).layers)


def prefill(model, prompts: list[list[int]], pad_id: int, n: int, steps: int, cascade: bool) -> Prefilled:
    """Run the prompts; rows of the result are prompt i's n samples at i * n ... i * n + n - 1.

    cascade: the cascade path (`cascade_ready(model)`, decided before kernels.cascade_attention swaps the
    model's attention), else the plain one."""
    if not cascade:
        return _padded_batch(model, prompts, pad_id, n, steps)
    device = next(model.parameters()).device
    shared = common_prefix(prompts)
    rests = [p[shared:] for p in prompts]
    width = shared + max(len(r) for r in rests)
    prefix = _run_prefix(model, prompts[0][:shared], device) if shared else []
    visible = torch.zeros(len(prompts), width, dtype=torch.bool, device=device)
    visible[:, :shared] = True
    logits: torch.Tensor | None = None
    buffers: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    order = sorted(range(len(prompts)), key=lambda i: len(rests[i]))
    for start in range(0, len(order), PREFILL_CHUNK):
        chunk = order[start:start + PREFILL_CHUNK]
        ids, chunk_mask = (t.to(device) for t in left_pad([rests[i] for i in chunk], pad_id))
        cache = DynamicCache(config=model.config)
        for idx, (keys, values) in enumerate(prefix):
            cache.update(keys.expand(len(chunk), -1, -1, -1), values.expand(len(chunk), -1, -1, -1), idx)
        attention = torch.cat([torch.ones(len(chunk), shared, dtype=torch.long, device=device), chunk_mask], 1)
        positions = shared + (chunk_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=attention, position_ids=positions, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
        if logits is None or buffers is None:
            buffers = _prompt_buffers(cache, len(prompts), width, prefix)
            logits = out.logits.new_empty(len(prompts), out.logits.shape[-1], dtype=torch.float32)
        rows, columns = torch.tensor(chunk, device=device), slice(width - ids.shape[1], width)
        logits[rows] = out.logits[:, -1].float()
        visible[rows, columns] = chunk_mask.bool()
        for (keys, values), (layer_keys, layer_values) in zip(buffers, map(_kv, cache.layers)):
            keys[rows, :, columns] = layer_keys[:, :, shared:]
            values[rows, :, columns] = layer_values[:, :, shared:]
    assert logits is not None and buffers is not None  # at least one chunk: there is at least one prompt
    layers = [CascadeLayer(k, v, len(prompts) * n, steps) for k, v in buffers]
    bias = torch.zeros(len(prompts), 1, 1, width, device=device, dtype=buffers[0][0].dtype)
    bias.masked_fill_(~visible.view(len(prompts), 1, 1, width), float("-inf"))
    joined = Cascade(prompts=[(layer.prompt_keys, layer.prompt_values) for layer in layers], bias=bias, n=n)
    position = torch.tensor([len(p) for p in prompts for _ in range(n)], device=device)
    cache_layers: list[CacheLayerMixin | LinearAttentionCacheLayerMixin] = list(layers)
    return Prefilled(logits.repeat_interleave(n, 0), Cache(layers=cache_layers), position, cascade=joined)


def _run_prefix(model, prefix: list[int], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, keys and values [1, H, len(prefix), D] of the common prefix."""
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([prefix], device=device)
    model(input_ids=ids, position_ids=torch.arange(len(prefix), device=device).unsqueeze(0), past_key_values=cache,
          use_cache=True, logits_to_keep=1)
    return [_kv(layer) for layer in cache.layers]


def _kv(layer) -> tuple[torch.Tensor, torch.Tensor]:
    """A full-attention cache layer's keys and values (`cascade_ready` admits no other kind of layer)."""
    return layer.keys, layer.values


def _prompt_buffers(cache, prompts: int, width: int, prefix) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Zeroed buffers [P, H, width, D] per layer (padding must hold finite numbers), prefix filled in."""
    out = []
    for idx, layer in enumerate(cache.layers):
        keys = layer.keys.new_zeros(prompts, layer.keys.shape[1], width, layer.keys.shape[-1])
        values = layer.values.new_zeros(prompts, layer.values.shape[1], width, layer.values.shape[-1])
        if prefix:
            shared = prefix[idx][0].shape[2]
            keys[:, :, :shared] = prefix[idx][0]
            values[:, :, :shared] = prefix[idx][1]
        out.append((keys, values))
    return out


def _padded_batch(model, prompts: list[list[int]], pad_id: int, n: int, steps: int) -> Prefilled:
    """The plain path: all prompts in one left-padded forward, the model's own cache repeated n times."""
    device = next(model.parameters()).device
    ids, mask = (t.to(device) for t in left_pad(prompts, pad_id))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True,
                logits_to_keep=1)
    if n > 1:
        cache.batch_repeat_interleave(n)
    full = torch.ones(len(prompts) * n, ids.shape[1] + steps, dtype=mask.dtype, device=device)
    full[:, :ids.shape[1]] = mask.repeat_interleave(n, 0)
    return Prefilled(out.logits[:, -1].float().repeat_interleave(n, 0), cache,
                     positions[:, -1].repeat_interleave(n, 0) + 1, mask=full, width=ids.shape[1])
