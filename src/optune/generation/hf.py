"""The transformers backend: batched sampling from the in-memory policy (no checkpoint round trip)."""

from __future__ import annotations

import torch

from optune.config import GenerationConfig
from optune.generation.base import Sample


def eos_ids(model, tokenizer) -> list[int]:
    found = model.generation_config.eos_token_id
    found = found if isinstance(found, list) else [found]
    return sorted({i for i in found + [tokenizer.eos_token_id] if i is not None})


def left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
        mask[i, width - len(s):] = 1
    return ids, mask


def split_response(tokens: list[int], stop: set[int]) -> tuple[list[int], bool]:
    """Cut generated tokens after the first EOS (kept); the rest is padding."""
    for i, tok in enumerate(tokens):
        if tok in stop:
            return tokens[: i + 1], True
    return tokens, False


class TransformersGenerator:
    """Batched `model.generate` with sampling (or greedy for evaluation)."""

    def __init__(self, cfg: GenerationConfig, tokenizer):
        self.cfg = cfg
        self.tokenizer = tokenizer

    @torch.inference_mode()
    def generate(self, model, prompt_ids: list[list[int]], n: int, greedy: bool = False,
                 seed: int = 0, path: str | None = None) -> list[list[Sample]]:
        stop = eos_ids(model, self.tokenizer)
        batch = [ids for ids in prompt_ids for _ in range(n)]
        input_ids, mask = left_pad(batch, self.tokenizer.pad_token_id)
        device = next(model.parameters()).device
        torch.manual_seed(seed)
        was_training = model.training
        model.eval()
        sampling = {} if greedy else {"do_sample": True, "top_p": self.cfg.top_p, "temperature": self.cfg.temperature}
        out = model.generate(
            input_ids=input_ids.to(device), attention_mask=mask.to(device), max_new_tokens=self.cfg.max_new_tokens,
            min_new_tokens=self.cfg.min_new_tokens or None,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=stop, do_sample=not greedy,
            top_k=None, **{k: v for k, v in sampling.items() if k != "do_sample"},
        )
        model.train(was_training)
        new = out[:, input_ids.shape[1]:].tolist()
        samples = []
        for tokens in new:
            ids, ended = split_response(tokens, set(stop))
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            samples.append(Sample(text=text, ids=ids, eos=ended))
        return [samples[i * n:(i + 1) * n] for i in range(len(prompt_ids))]
