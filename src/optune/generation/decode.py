"""optune's own decode loop for the transformers backend (`generation.impl: decode`).

It samples by the same rule as `model.generate(do_sample=True, temperature, top_p, top_k=None)` (see
optune.generation.sampling) from the same in-memory model, and also returns each sampled token's raw
log-prob (before temperature and top-p), so fresh responses carry their log pi_t for the DPO reference.

Where the time goes in `model.generate` at the default run's shapes, and what this loop does instead
(measured in benchmarks/profile_step.py, docs/benchmarks.md "Generation speed"):
- top-p sorts the whole 49k vocabulary of every row at every step: here a partial sort (top k) with an
  exact fallback (sampling.sample_top_p);
- grouped-query attention with a padding mask: transformers' sdpa path copies keys and values to every
  query head at every step (`repeat_kv`); here attention runs on the CPU kernel's own GQA (`enable_gqa`);
- the cache grows by concatenation (a copy of the whole cache per layer per step): here it is written
  into buffers allocated once;
- the n samples of a prompt share one prefill instead of n.

The randomness is one uniform number per sequence per step from a generator seeded with `seed`, so a
call is deterministic for a fixed seed, but its samples differ from `model.generate`'s for the same seed
(that one draws `torch.multinomial` over the vocabulary); `generation.impl: generate` reproduces those.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from optune.generation.prefill import prefill
from optune.generation.sampling import PREFILTER, choose

_GQA_ATTENTION = "optune_sdpa_gqa"


@dataclass
class Decoded:
    tokens: list[int]
    """Generated ids, cut after the first stop id (kept)."""
    ended: bool
    """Whether a stop id ended the sequence (False: cut at max_new_tokens)."""
    logp: float
    """Sum of the raw log-probs of `tokens` (the stop id included) under the model."""


@dataclass
class DecodeSettings:
    max_new_tokens: int
    min_new_tokens: int = 0
    greedy: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    prefilter: tuple[int, ...] = PREFILTER
    compact: bool = True
    """Drop finished rows from the batch (COMPACT_FRACTION); the tokens are the same either way."""


COMPACT_FRACTION = 0.25
"""Finished rows leave the batch once they are this fraction of it: a copy of the cache, then every later
step computes fewer rows (model.generate computes every row until the last one ends)."""


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
def _grouped_attention(model):
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


def _finish(tokens: torch.Tensor, logps: torch.Tensor, stop: list[int]) -> list[Decoded]:
    """Per row of tokens/logps [B, S]: ids up to and including the first stop id, and their summed logp."""
    out = []
    for row, lp in zip(tokens.tolist(), logps.tolist()):
        end = next((i + 1 for i, tok in enumerate(row) if tok in stop), None)
        kept = row if end is None else row[:end]
        out.append(Decoded(tokens=kept, ended=end is not None, logp=float(sum(lp[:len(kept)]))))
    return out


@torch.inference_mode()
def decode(model, prompts: list[list[int]], n: int, pad_id: int, stop: list[int], settings: DecodeSettings,
           seed: int = 0) -> list[Decoded]:
    """n continuations of every prompt (row i * n + j is sample j of prompt i), sampled or greedy.

    Stops when every row has produced a stop id or max_new_tokens tokens; stop ids are suppressed before
    min_new_tokens. The log-probs are those of the model's raw logits, whatever the sampling settings.
    """
    steps = settings.max_new_tokens
    if not prompts or steps <= 0:
        return [Decoded([], False, 0.0) for _ in range(len(prompts) * n)]
    with _grouped_attention(model):
        first = prefill(model, prompts, pad_id, n, steps)
        logits, cache, mask, position = first.logits, first.cache, first.mask, first.position
        rows, width, device = logits.shape[0], mask.shape[1] - steps, logits.device
        generator = torch.Generator(device=device).manual_seed(seed)
        stop_ids = torch.tensor(stop, device=device)
        tokens = torch.full((rows, steps), pad_id, dtype=torch.long, device=device)
        logps = torch.zeros(rows, steps, dtype=torch.float32, device=device)
        live = torch.arange(rows, device=device)  # the original row of each row still in the batch
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        for step in range(steps):
            # every row's uniform is drawn whether or not it is still in the batch: the same tokens either way
            u = None if settings.greedy else torch.rand(rows, generator=generator, device=device)[live]
            chosen, logp = choose(logits, stop if step < settings.min_new_tokens else [], settings.greedy,
                                  settings.temperature, settings.top_p, u, settings.prefilter)
            chosen = torch.where(done, pad_id, chosen)
            tokens[live, step], logps[live, step] = chosen, logp
            done |= torch.isin(chosen, stop_ids)
            if step == steps - 1 or bool(done.all()):
                break
            if settings.compact and int(done.sum()) >= max(1.0, COMPACT_FRACTION * len(live)):
                keep = (~done).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                chosen, mask, position, live, done = chosen[keep], mask[keep], position[keep], live[keep], done[keep]
            logits = model(input_ids=chosen.unsqueeze(1), attention_mask=mask[:, :width + step + 1],
                           position_ids=(position + step).unsqueeze(1), past_key_values=cache,
                           use_cache=True).logits[:, -1].float()
    return _finish(tokens.cpu(), logps.cpu(), stop)
