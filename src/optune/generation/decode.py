"""optune's own decode loop for the transformers backend (`generation.impl: decode`).

It samples by the same rule as `model.generate(do_sample=True, temperature, top_p, top_k=None)` (see
optune.generation.sampling) from the same in-memory model, and also returns each sampled token's raw
log-prob (before temperature and top-p), so fresh responses carry their log pi_t for the DPO reference.

Where the time goes in `model.generate` at the default run's shapes, and what this loop does instead
(measured in benchmarks/profile_step.py, docs/benchmarks.md "Speed"):
- top-p sorts the whole 49k vocabulary of every row at every step: here a partial sort (top k) with an
  exact fallback (sampling.sample_top_p);
- grouped-query attention with a padding mask: transformers' sdpa path copies keys and values to every
  query head at every step (`repeat_kv`), and every sample of a prompt reads its own copy of the prompt's;
  here the samples of a prompt read one copy, groups left grouped (kernels.cascade_attention);
- the cache grows by concatenation (a copy of the whole cache per layer per step): here it is written
  into buffers allocated once (optune.generation.prefill);
- every sample of a prompt runs the whole padded prompt: here each prompt runs once, without its common
  prefix with the other prompts (run once for all), in chunks sorted by length (little padding);
- finished rows keep being computed until the last one ends: here they leave the batch;
- linear layers on MKL with the weights as stored: here, on the CPU, oneDNN on weights packed once per
  call (kernels.packed_linears; off when the log-probs serve as DPO references, see there).

The randomness is one uniform number per sequence per step from a generator seeded with `seed`, so a
call is deterministic for a fixed seed, but its samples differ from `model.generate`'s for the same seed
(that one draws `torch.multinomial` over the vocabulary); `generation.impl: generate` reproduces those.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from optune.generation.base import split_response
from optune.generation.kernels import cascade_attention, packed_linears
from optune.generation.prefill import cascade_ready, prefill
from optune.generation.sampling import PREFILTER, choose


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
    packed: bool = True
    """CPU: linear layers on oneDNN with weights packed for the call (kernels.packed_linears)."""


COMPACT_FRACTION = 0.25
"""Finished rows leave the batch once they are this fraction of it: a copy of the cache, then every later
step computes fewer rows (model.generate computes every row until the last one ends)."""


def _finish(tokens: torch.Tensor, logps: torch.Tensor, stop: list[int]) -> list[Decoded]:
    """Per row of tokens/logps [B, S]: ids up to and including the first stop id, and their summed logp."""
    out, stop_set = [], set(stop)
    for row, lp in zip(tokens.tolist(), logps.tolist()):
        kept, ended = split_response(row, stop_set)
        out.append(Decoded(tokens=kept, ended=ended, logp=float(sum(lp[:len(kept)]))))
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
    cascade = cascade_ready(model)
    with cascade_attention(model, cascade), packed_linears(model, settings.packed, rows=len(prompts) * n):
        first = prefill(model, prompts, pad_id, n, steps, cascade)
        logits, cache, position = first.logits, first.cache, first.position
        rows, device = logits.shape[0], logits.device
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
                chosen, position, live, done = chosen[keep], position[keep], live[keep], done[keep]
            logits = model(input_ids=chosen.unsqueeze(1), position_ids=(position + step).unsqueeze(1),
                           past_key_values=cache, use_cache=True, **first.step_kwargs(step, live)).logits[:, -1].float()
    return _finish(tokens.cpu(), logps.cpu(), stop)
