"""The prompt pass of optune's decode loop, and the key/value cache it leaves for the decode steps.

The cache of row r (sample j of prompt i, r = i * n + j) holds, in buffers allocated once per call:

    [common prefix | padding | rest of prompt i | generated tokens ...]

- The common prefix of all prompts (the chat template's system turn: 24 of ~60 tokens on the built-in
  task) is run once, as one sequence, and its keys/values shared by every row.
- The rest of each prompt is run once per prompt, not once per sample, in chunks of prompts of similar
  length (sorted by length), so padding costs little; a chunk's keys/values are copied to its n rows.
- Padding sits between the prefix and the rest; it is masked out, and position ids skip it, so every token
  sees exactly the keys, values and position it would see in its own unpadded sequence.
- A decode step writes its column into the buffers (no concatenation: transformers' DynamicLayer copies
  the whole cache of every layer at every step).

Caches of other kinds (sliding windows, linear attention) take the plain path: one padded batch, no
sharing, their own cache class repeated n times.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

from optune.generation.base import left_pad

PREFILL_CHUNK = 8
"""Prompts per prefill forward: enough rows for the matmuls to run at full speed on a CPU, few enough
that sorting by length leaves little padding."""


class BufferLayer(DynamicLayer):
    """One layer's keys and values in buffers [B, H, capacity, D]; `update` writes the next columns."""

    is_croppable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        super().__init__()
        self.dtype, self.device = keys.dtype, keys.device
        self.buf_keys, self.buf_values, self.length = keys, values, length
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        end = self.length + key_states.shape[-2]
        self.buf_keys[:, :, self.length:end] = key_states
        self.buf_values[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self.buf_keys[:, :, :end], self.buf_values[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.buf_keys.shape[2]

    def batch_repeat_interleave(self, repeats: int) -> None:
        raise NotImplementedError("a buffer layer is built with its final batch")

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only these rows (finished rows leave the batch)."""
        self.buf_keys = self.buf_keys.index_select(0, indices)
        self.buf_values = self.buf_values.index_select(0, indices)
        self.keys, self.values = self.buf_keys[:, :, :self.length], self.buf_values[:, :, :self.length]


@dataclass
class Prefilled:
    logits: torch.Tensor
    """[P * n, V] float32 next-token logits after each prompt."""
    cache: Cache
    """Keys/values of the prompts, with room for the decode steps."""
    mask: torch.Tensor
    """[P * n, width + steps] attention mask: the prompt columns, then ones for the generated tokens."""
    position: torch.Tensor
    """[P * n] position id of each row's first generated token (its prompt length)."""


def common_prefix(prompts: list[list[int]]) -> int:
    """Length of the longest common prefix of 2+ prompts, leaving every prompt at least one token of its own."""
    if len(prompts) < 2:
        return 0
    limit, first = min(len(p) for p in prompts) - 1, prompts[0]
    length = 0
    while length < limit and all(p[length] == first[length] for p in prompts):
        length += 1
    return length


def _plain_cache(model) -> bool:
    """Whether the model's cache is all full-attention DynamicLayers (what BufferLayer replaces)."""
    layers = DynamicCache(config=model.config).layers
    return all(type(layer) is DynamicLayer for layer in layers)


def prefill(model, prompts: list[list[int]], pad_id: int, n: int, steps: int) -> Prefilled:
    """Run the prompts; rows of the result are prompt i's n samples at i * n ... i * n + n - 1."""
    if not _plain_cache(model):
        return _padded_batch(model, prompts, pad_id, n, steps)
    device = next(model.parameters()).device
    shared = common_prefix(prompts)
    rests = [p[shared:] for p in prompts]
    width = shared + max(len(r) for r in rests)
    prefix = _run_prefix(model, prompts[0][:shared], device) if shared else None
    rows = len(prompts) * n
    mask = torch.zeros(rows, width + steps, dtype=torch.long, device=device)
    mask[:, :shared] = 1
    mask[:, width:] = 1
    position = torch.tensor([len(p) for p in prompts for _ in range(n)], device=device)
    logits, buffers = None, None
    order = sorted(range(len(prompts)), key=lambda i: len(rests[i]))
    for start in range(0, len(order), PREFILL_CHUNK):
        chunk = order[start:start + PREFILL_CHUNK]
        ids, chunk_mask = (t.to(device) for t in left_pad([rests[i] for i in chunk], pad_id))
        cache = DynamicCache(config=model.config)
        for idx, (keys, values) in enumerate(prefix or []):
            cache.update(keys.expand(len(chunk), -1, -1, -1), values.expand(len(chunk), -1, -1, -1), idx)
        attention = torch.cat([torch.ones(len(chunk), shared, dtype=torch.long, device=device), chunk_mask], 1)
        positions = shared + (chunk_mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=attention, position_ids=positions, past_key_values=cache,
                    use_cache=True, logits_to_keep=1)
        target = torch.tensor([i * n + j for i in chunk for j in range(n)], device=device)
        if buffers is None:
            buffers = _buffers(cache, rows, width + steps, prefix)
            logits = out.logits.new_empty(rows, out.logits.shape[-1], dtype=torch.float32)
        logits[target] = out.logits[:, -1].float().repeat_interleave(n, 0)
        columns = slice(width - ids.shape[1], width)
        mask[target, columns] = chunk_mask.repeat_interleave(n, 0)
        for (buf_k, buf_v), layer in zip(buffers, cache.layers):
            buf_k[target, :, columns] = layer.keys[:, :, shared:].repeat_interleave(n, 0)
            buf_v[target, :, columns] = layer.values[:, :, shared:].repeat_interleave(n, 0)
    cache = Cache(layers=[BufferLayer(k, v, width) for k, v in buffers])
    return Prefilled(logits, cache, mask, position)


def _run_prefix(model, prefix: list[int], device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, keys and values [1, H, len(prefix), D] of the common prefix."""
    cache = DynamicCache(config=model.config)
    ids = torch.tensor([prefix], device=device)
    model(input_ids=ids, position_ids=torch.arange(len(prefix), device=device).unsqueeze(0), past_key_values=cache,
          use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in cache.layers]


def _buffers(cache, rows: int, capacity: int, prefix) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Zeroed buffers [rows, H, capacity, D] per layer (padding must hold finite numbers), prefix filled in."""
    out = []
    for idx, layer in enumerate(cache.layers):
        keys = layer.keys.new_zeros(rows, layer.keys.shape[1], capacity, layer.keys.shape[-1])
        values = layer.values.new_zeros(rows, layer.values.shape[1], capacity, layer.values.shape[-1])
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
    return Prefilled(out.logits[:, -1].float().repeat_interleave(n, 0), cache, full,
                     positions[:, -1].repeat_interleave(n, 0) + 1)
