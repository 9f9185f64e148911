"""Pairs packed with their prompt computed once: prompt + chosen + rejected in one block of a row.

The plain path (`optune.training.logps.collate`) runs every pair as two right-padded sequences, prompt +
chosen and prompt + rejected, so each prompt goes through the decoder twice and every sequence is padded
to the longest of the micro-batch. Here a pair is one block [prompt | chosen | rejected]: positions restart
at len(prompt) for the rejected response, and a block attention mask lets the rejected tokens attend to
the prompt but not to the chosen ones, so every response token sees exactly the context it has in the plain
path. Blocks are packed first-fit into rows; the row width trades padding against attention's cost, which
grows with the square of the width (`rows_for`).

The mask is a custom 4-D one, which transformers passes to the attention function as it is: `sdpa` takes it
as a boolean mask, `eager` as an additive float one. Other attention implementations (flash-attention,
flex) and architectures this was not tested on take the plain path (`supports`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from optune.distributed.sharding import is_sharded
from optune.losses import summed_token_logps
from optune.pairs import Pair

# Families whose decoder takes a custom 4-D mask and explicit position ids as they are, tested equal to the
# plain path in tests/unit/training/test_packing.py; others keep the plain path.
PACKED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
PACKED_ATTENTION = ("sdpa", "eager")
PROMPT, CHOSEN, REJECTED, PAD = 0, 1, 2, -1


@dataclass
class PackedBatch:
    """A micro-batch of pairs as rows of blocks; R rows of width W, N predicted response tokens."""

    input_ids: torch.Tensor     # [R, W]
    position_ids: torch.Tensor  # [R, W] restarting at each block, and at len(prompt) for the rejected part
    block: torch.Tensor         # [R, W] block number in its row; PAD (-1) on padding
    part: torch.Tensor          # [R, W] PROMPT, CHOSEN or REJECTED
    predict_at: torch.Tensor    # [N] flat index into R x W of the position whose output predicts the token
    targets: torch.Tensor       # [N] the predicted token ids
    sequence: torch.Tensor      # [N] which log-prob the token adds to: pair i chosen -> i, rejected -> B + i
    n_pairs: int

    def to(self, device) -> PackedBatch:
        return PackedBatch(self.input_ids.to(device), self.position_ids.to(device), self.block.to(device),
                           self.part.to(device), self.predict_at.to(device), self.targets.to(device),
                           self.sequence.to(device), self.n_pairs)

    def attention_mask(self, kind: str, dtype: torch.dtype) -> torch.Tensor:
        """[R, 1, W, W]: causal within a block, rejected tokens blind to chosen ones, nothing across blocks.

        Padding attends to earlier padding of its row (never to a real token, and no row is fully masked,
        which would make softmax NaN). `kind` "sdpa": boolean (True = attend); "eager": additive float.
        """
        width = self.input_ids.shape[1]
        causal = torch.ones(width, width, dtype=torch.bool, device=self.block.device).tril()
        same = self.block[:, :, None] == self.block[:, None, :]
        cross = (self.part[:, :, None] == REJECTED) & (self.part[:, None, :] == CHOSEN)
        allowed = (same & causal & ~cross).unsqueeze(1)
        if kind == "sdpa":
            return allowed
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min)


def _block(pair: Pair) -> tuple[list[int], list[int], list[int]]:
    """Token ids, position ids and parts of one pair's block."""
    p, c, r = pair.prompt_ids, pair.chosen.ids, pair.rejected.ids
    ids = p + c + r
    positions = list(range(len(p) + len(c))) + list(range(len(p), len(p) + len(r)))
    parts = [PROMPT] * len(p) + [CHOSEN] * len(c) + [REJECTED] * len(r)
    return ids, positions, parts


def _first_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """First-fit decreasing into rows of `capacity` tokens: block indices per row."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        j = next((j for j, free in enumerate(room) if free >= lengths[i]), None)
        if j is None:
            rows.append([])
            room.append(capacity)
            j = len(rows) - 1
        rows[j].append(i)
        room[j] -= lengths[i]
    return rows


def rows_for(lengths: list[int], attention_weight: float) -> list[list[int]]:
    """Blocks per row at the row width that costs least: rows x width x (1 + attention_weight x width).

    Wider rows hold more blocks and less padding, but attention over a row costs its width squared, masked
    or not; `attention_weight` is that cost per token and unit of width relative to the rest of the layer.
    """
    longest, total = max(lengths), sum(lengths)
    best: tuple[float, list[list[int]]] | None = None
    for capacity in sorted({*range(longest, total, max(1, longest // 16)), total}):
        rows = _first_fit(lengths, capacity)
        width = max(sum(lengths[i] for i in row) for row in rows)
        cost = len(rows) * width * (1 + attention_weight * width)
        if best is None or cost < best[0]:
            best = (cost, rows)
    assert best is not None  # the loop meets `total` at least
    return best[1]


def attention_cost(model) -> float:
    """Attention's cost per token and unit of row width relative to a layer's weights: 4 x width x q_width
    flops (scores and values) against 2 x layer parameters, for the layers of `model`'s decoder."""
    config, decoder = model.config, model.get_decoder()
    heads = config.num_attention_heads
    q_width = heads * (getattr(config, "head_dim", None) or config.hidden_size // heads)
    layer = sum(p.numel() for p in decoder.layers[0].parameters())
    return 2 * q_width / layer


def _predictions(pair: Pair, start: int, i: int, n: int) -> tuple[list[int], list[int], list[int]]:
    """(position predicting it, token, sequence) of each response token of pair i whose block starts at
    `start`; as in the plain path, token t is predicted by the output at t - 1 of its own sequence."""
    p, c = len(pair.prompt_ids), len(pair.chosen.ids)
    at, targets, seqs = [], [], []
    for response, offset, seq in ((pair.chosen.ids, p, i), (pair.rejected.ids, p + c, n + i)):
        for k, token in enumerate(response):
            if k == 0 and p == 0:
                continue  # the first token of a sequence has no prediction
            at.append(start + (p - 1 if k == 0 else offset + k - 1))
            targets.append(token)
            seqs.append(seq)
    return at, targets, seqs


def pack(pairs: list[Pair], pad_id: int, attention_weight: float = 0.0) -> PackedBatch:
    """One block per pair, packed into rows (see the module docstring and `rows_for`)."""
    blocks = [_block(p) for p in pairs]
    rows = rows_for([len(b[0]) for b in blocks], attention_weight)
    width = max(sum(len(blocks[i][0]) for i in row) for row in rows)
    shape = (len(rows), width)
    ids = torch.full(shape, pad_id, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    block_of = torch.full(shape, PAD, dtype=torch.long)
    part = torch.full(shape, PAD, dtype=torch.long)
    at, targets, seqs = [], [], []
    for r, row in enumerate(rows):
        col = 0
        for b, i in enumerate(row):
            tok, pos, prt = blocks[i]
            ids[r, col:col + len(tok)] = torch.tensor(tok, dtype=torch.long)
            positions[r, col:col + len(tok)] = torch.tensor(pos, dtype=torch.long)
            part[r, col:col + len(tok)] = torch.tensor(prt, dtype=torch.long)
            block_of[r, col:col + len(tok)] = b
            a, t, s = _predictions(pairs[i], r * width + col, i, len(pairs))
            at += a
            targets += t
            seqs += s
            col += len(tok)
        positions[r, col:] = torch.arange(width - col)  # padding: any positions; nothing real sees them
    return PackedBatch(ids, positions, block_of, part, torch.tensor(at, dtype=torch.long),
                       torch.tensor(targets, dtype=torch.long), torch.tensor(seqs, dtype=torch.long), len(pairs))


def head_apart(model) -> bool:
    """Whether the decoder and the output projection may run apart (logits only where they are needed).

    Not for a DDP/FSDP/DeepSpeed wrapper (optune.distributed), which has neither method, nor for a model sharded
    with FSDP2 (optune.distributed.sharding), which has them: gradient synchronisation and parameter gathering
    run in the model's own forward, which running the parts would skip. Not for models whose logits are
    post-processed (soft-capping, scaling).
    """
    if is_sharded(model):
        return False
    decoder = getattr(model, "get_decoder", lambda: None)()
    head = getattr(model, "get_output_embeddings", lambda: None)()
    post = any(getattr(getattr(model, "config", None), k, None) for k in ("final_logit_softcapping", "logit_scale"))
    return decoder is not None and head is not None and not post


def supports(model, pairs: list[Pair]) -> bool:
    """Whether `model` can take the packed path for `pairs`: an unwrapped transformers causal LM of a tested
    family with sdpa or eager attention, no post-processing of its logits, and no sliding window shorter than
    the pairs' sequences (the custom mask replaces the model's own sliding-window mask)."""
    config = getattr(model, "config", None)
    if not head_apart(model) or getattr(config, "model_type", None) not in PACKED_MODEL_TYPES:
        return False
    if getattr(config, "_attn_implementation", None) not in PACKED_ATTENTION:
        return False
    window = getattr(config, "sliding_window", None)
    mistral = getattr(config, "model_type", None) == "mistral"
    if window is not None and (mistral or getattr(config, "use_sliding_window", False)):
        longest = max(len(p.prompt_ids) + max(len(p.chosen.ids), len(p.rejected.ids)) for p in pairs)
        return longest <= window
    return True


def packed_logps(model, batch: PackedBatch) -> torch.Tensor:
    """[2B] summed response log-probs, chosen then rejected, as `logps.response_logps` returns them."""
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    kind = model.config._attn_implementation
    mask = batch.attention_mask(kind, next(model.parameters()).dtype)
    hidden = decoder(input_ids=batch.input_ids, attention_mask=mask, position_ids=batch.position_ids,
                     use_cache=False).last_hidden_state
    picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.predict_at)
    return summed_token_logps(head(picked), batch.targets, batch.sequence, 2 * batch.n_pairs)
