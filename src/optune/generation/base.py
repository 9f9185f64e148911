"""What every generation backend shares: the `Sample` record, the `Generator` protocol, prompt encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from optune.prompt import Prompt


@dataclass
class Sample:
    text: str
    """Decoded response without special tokens."""
    ids: list[int]
    """Response token ids as generated, ending with EOS when `eos` is true (trained on exactly these)."""
    eos: bool
    """Whether the response ended with EOS (False: cut at max_new_tokens)."""
    logp: float | None = None
    """Sum of the response tokens' log-probs (EOS included) under the sampling policy itself (temperature 1, no
    top-p), where the backend provides it (vllm; transformers with generation.impl "decode"); usable as the DPO
    reference log-prob when that policy is the reference."""


class Generator(Protocol):
    def generate(self, model, prompt_ids: list[list[int]], n: int, greedy: bool = False, seed: int = 0,
                 path: str | None = None) -> list[list[Sample]]:
        """`n` responses per prompt (token ids, chat template applied), sampled or `greedy`, seeded; `path` is the
        checkpoint that holds `model`, for a backend that loads weights itself."""
        ...


def release(generator: Generator) -> None:
    """Free a generation backend's own memory (the vllm engine) at the end of a run."""
    free = getattr(generator, "release", None)
    if free is not None:
        free()


def pause(generator: Generator) -> None:
    """Before training: free what a backend holds that training needs (`pause()` where it has one: the vllm
    engine shuts down, or sleeps until its weights are updated in place; else `release()`)."""
    stop = getattr(generator, "pause", None)
    if stop is not None:
        stop()
    else:
        release(generator)


def encode_prompt(tokenizer, prompt: Prompt, max_tokens: int) -> list[int]:
    """Chat-template token ids of a prompt (its history, then the request), left-truncated."""
    ids = tokenizer.apply_chat_template(prompt.messages(), add_generation_prompt=True, tokenize=True,
                                        return_dict=False)
    return list(ids)[-max_tokens:]


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and attention mask, both [B, longest]."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def stop_ids(eos_token_id, tokenizer) -> list[int]:
    """The ids that end a response: a generation config's `eos_token_id` (one id, a list or None) and the
    tokenizer's EOS, as both backends use them."""
    found = eos_token_id if isinstance(eos_token_id, list) else [eos_token_id]
    return sorted({i for i in found + [tokenizer.eos_token_id] if i is not None})


def split_response(tokens: list[int], stop: set[int]) -> tuple[list[int], bool]:
    """Cut generated tokens after the first EOS (kept); the rest is padding."""
    for i, tok in enumerate(tokens):
        if tok in stop:
            return tokens[: i + 1], True
    return tokens, False
