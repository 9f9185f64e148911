"""Pure sampling functions for the decode loop: next-token logits in, tokens and log-probs out.

The rule is transformers' `TemperatureLogitsWarper` then `TopPLogitsWarper` (what `model.generate` applies
with `do_sample=True, temperature, top_p, top_k=None`): probabilities p = softmax(logits / temperature);
with tokens ranked by p, descending, a token is kept when the mass ranked strictly before it is below
top_p (the smallest prefix that reaches top_p, never empty); the next token is drawn from the kept tokens in
proportion to p. transformers evaluates the same rule on an ascending cumulative sum (keep where it exceeds
1 - top_p), so the two can disagree only about a token whose boundary sits within float32 rounding of top_p.

Speed: ranking a 49k vocabulary per row is the expensive part. `sample_top_p` ranks only the top k
probabilities (a partial sort) and, for the rows where those k do not reach top_p, the top k' of the next
stage, then the full sort. When the top k reach top_p, every token outside them has at least top_p ranked
before it, so the nucleus lies inside them: every stage keeps the same tokens and, for the same uniform
draw, returns the same token as the full sort (with a sequential cumulative sum, as on the CPU).

The draw is inverse-CDF with one uniform number per row (`u`), so the randomness a step uses does not
depend on the vocabulary, the stages or the nucleus size, and a seeded generator gives the same tokens on
every path.
"""

from __future__ import annotations

import torch

PREFILTER = (256, 4096)
"""Partial-sort stages before the full sort. On the embedded model at top_p 0.9 the nucleus holds a median
of 9 tokens, but 11% of rows hold more than 256 and 0.2% more than 2048 (benchmarks/profile_step.py)."""

_TINY = 1e-30  # below this a float32 probability has lost relative precision: take the exact log-softmax


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Raw log-probs [B] (float32) of tokens [B] under logits [B, V]: no temperature, no top-p, no masking."""
    logits = logits.float()
    return logits.gather(1, tokens.unsqueeze(1)).squeeze(1) - logits.logsumexp(-1)


def _draw(sorted_probs: torch.Tensor, keep: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Rank [B] drawn by inverse CDF among the kept prefix of sorted_probs [B, K] (keep [B, K]), u [B] in [0, 1)."""
    cum = (sorted_probs * keep).cumsum(-1)
    target = u * cum[:, -1]
    rank = (cum <= target.unsqueeze(1)).sum(-1)
    return torch.minimum(rank, keep.sum(-1) - 1)  # target within rounding of the total lands on the last kept


def _nucleus_draw(sorted_probs: torch.Tensor, threshold: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Rank [B] drawn from the nucleus of probabilities sorted descending [B, K]: the tokens with less than
    threshold [B, 1] (top_p times the row's total mass) ranked before them."""
    cum = sorted_probs.cumsum(-1)
    before = torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1]], dim=1)  # mass ranked strictly before
    return _draw(sorted_probs, before < threshold, u)


def sample_top_p(probs: torch.Tensor, top_p: float, u: torch.Tensor, prefilter: tuple[int, ...] = PREFILTER,
                 total: torch.Tensor | None = None) -> torch.Tensor:
    """Tokens [B] from probabilities probs [B, V] by the top-p rule, one uniform u [B] in [0, 1) per row.

    prefilter: partial-sort sizes tried in turn before the full sort (() for the full sort alone); the
    result does not depend on them. total: [B] mass of each row when probs are not normalised (tokens
    zeroed out), else 1: the rule then applies to probs / total.
    """
    vocab = probs.shape[-1]
    if top_p >= 1.0:  # transformers skips the warper at top_p 1: the whole distribution, no ranking needed
        return _draw(probs, torch.ones_like(probs, dtype=torch.bool), u)
    threshold = top_p * (total.unsqueeze(1) if total is not None else probs.new_ones(len(probs), 1))
    return _ranked(probs, threshold, u, [k for k in prefilter if k < vocab])


def _ranked(probs: torch.Tensor, threshold: torch.Tensor, u: torch.Tensor, stages: list[int]) -> torch.Tensor:
    if not stages:
        sorted_probs, order = probs.sort(-1, descending=True)
        return order.gather(1, _nucleus_draw(sorted_probs, threshold, u).unsqueeze(1)).squeeze(1)
    top, order = probs.topk(stages[0], dim=-1)
    tokens = order.gather(1, _nucleus_draw(top, threshold, u).unsqueeze(1)).squeeze(1)
    short = top.cumsum(-1)[:, -1:] < threshold  # the same sum that decides whether rank k would be kept
    if short.any():
        rows = short.squeeze(1).nonzero().squeeze(1)
        tokens[rows] = _ranked(probs[rows], threshold[rows], u[rows], stages[1:])
    return tokens


def choose(logits: torch.Tensor, suppressed: list[int], greedy: bool, temperature: float, top_p: float,
           u: torch.Tensor | None, prefilter: tuple[int, ...] = PREFILTER) -> tuple[torch.Tensor, torch.Tensor]:
    """Next tokens [B] and their raw log-probs [B] from the model's logits [B, V].

    suppressed: token ids that may not be chosen at this step (EOS before min_new_tokens); they still count
    in the raw log-probs. greedy: argmax; else temperature, then top-p with the uniforms u [B].
    """
    logits = logits.float()
    raw = logits.softmax(-1)
    ids = torch.tensor(suppressed, dtype=torch.long, device=logits.device)
    if greedy:
        tokens = (logits.index_fill(1, ids, float("-inf")) if suppressed else logits).argmax(-1)
    elif u is None:
        raise ValueError("sampling needs one uniform per row (u)")
    elif temperature == 1.0:
        total = None
        if suppressed:  # zeroed in place: no copy of the vocabulary; the chosen token is never one of them
            total = 1.0 - raw.index_select(1, ids).sum(-1)
            raw.index_fill_(1, ids, 0.0)
        tokens = sample_top_p(raw, top_p, u, prefilter, total)
    else:
        scaled = logits / temperature
        if suppressed:
            scaled.index_fill_(1, ids, float("-inf"))
        tokens = sample_top_p(scaled.softmax(-1), top_p, u, prefilter)
    chosen = raw.gather(1, tokens.unsqueeze(1)).squeeze(1)
    logp = chosen.log()
    tiny = chosen < _TINY
    if tiny.any():
        logp[tiny] = token_logprobs(logits[tiny], tokens[tiny])
    return tokens, logp
