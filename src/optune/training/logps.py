"""Sequence log-probs of pairs under a causal LM: collation, the response-only forward, the reference pass.

A pair is an `optune.pairs.Pair`; its chosen and rejected sequences are prompt + response token ids.
`pair_logps` takes the packed path of `optune.training.packing` (the prompt computed once per pair) where
the model supports it and the plain path here (two padded sequences per pair) otherwise; both compute the
same log-probs and gradients (tests/unit/training/test_packing.py).
"""

from __future__ import annotations

import contextlib

import torch

from optune.clock import Progress
from optune.losses import sequence_logps, summed_token_logps
from optune.pairs import Pair
from optune.training import packing as packed


def collate(pairs: list[Pair], pad_id: int) -> dict[str, torch.Tensor]:
    """Chosen then rejected sequences, right-padded: input_ids, attention_mask, loss_mask all [2B, T]."""
    return collate_sequences([(p.prompt_ids, p.chosen.ids) for p in pairs] +
                             [(p.prompt_ids, p.rejected.ids) for p in pairs], pad_id)


def collate_sequences(seqs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """(prompt, response) token ids, right-padded: input_ids, attention_mask, loss_mask (response tokens) [B, T]."""
    width = max(len(a) + len(b) for a, b in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    loss_mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (prompt, response) in enumerate(seqs):
        n = len(prompt) + len(response)
        ids[i, :n] = torch.tensor(prompt + response, dtype=torch.long)
        attn[i, :n] = 1
        loss_mask[i, len(prompt):n] = 1
    return {"input_ids": ids, "attention_mask": attn, "loss_mask": loss_mask}


def _autocast(model, bf16: bool):
    device = next(model.parameters()).device.type
    return torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def response_logps(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor):
    """[B] summed log-probs of the response tokens, computing vocabulary logits only where they are needed.

    The output projection and log-softmax over the vocabulary are a large share of a small model's cost;
    prompt positions never need them. Models that `packing.head_apart` refuses (wrapped for several
    processes, post-processed logits) take the plain path through `sequence_logps`.
    """
    if not packed.head_apart(model):
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        return sequence_logps(logits, input_ids, loss_mask)
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    predicts = loss_mask[:, 1:].bool()  # position t predicts token t + 1
    return summed_token_logps(head(hidden[:, :-1][predicts]), input_ids[:, 1:][predicts], predicts.nonzero()[:, 0],
                              len(input_ids))


def pair_logps(model, pairs: list[Pair], pad_id: int, bf16: bool,
               packing: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probs [B] of the chosen and rejected responses (response tokens only).

    With `packing` (TrainConfig.packing), models that `packing.supports` take the packed path.
    """
    device = next(model.parameters()).device
    with _autocast(model, bf16):
        if packing and packed.supports(model, pairs):
            logps = packed.packed_logps(model, packed.pack(pairs, pad_id, packed.attention_cost(model)).to(device))
        else:
            batch = {k: v.to(device) for k, v in collate(pairs, pad_id).items()}
            logps = response_logps(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
    return logps[: len(pairs)], logps[len(pairs):]


@torch.no_grad()
def reference_logps(model, pairs: list[Pair], pad_id: int, batch_size: int, bf16: bool,
                    progress: Progress | None = None, packing: bool = True):
    """Log-probs of every pair under the frozen reference, as two lists of floats (`packing` as in pair_logps)."""
    was_training = model.training
    model.eval()
    chosen, rejected = [], []
    for start in range(0, len(pairs), batch_size):
        c, r = pair_logps(model, pairs[start:start + batch_size], pad_id, bf16, packing)
        chosen += c.tolist()
        rejected += r.tolist()
        if progress is not None:
            progress.update(len(pairs[start:start + batch_size]))
    model.train(was_training)
    return chosen, rejected


@torch.no_grad()
def responses_logps(model, prompts: list[list[int]], responses: list[list[int]], pad_id: int,
                    batch_size: int, bf16: bool = False) -> list[float]:
    """Summed log-probs of each response (its tokens only) after its prompt, in evaluation mode (`bf16`: under
    bf16 autocast, as training computes them)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out: list[float] = []
    for start in range(0, len(prompts), batch_size):
        seqs = list(zip(prompts[start:start + batch_size], responses[start:start + batch_size]))
        batch = {k: v.to(device) for k, v in collate_sequences(seqs, pad_id).items()}
        with _autocast(model, bf16):
            logps = response_logps(model, batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
        out += logps.float().tolist()
    model.train(was_training)
    return out
