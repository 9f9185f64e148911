"""Generation backends: sample n responses per prompt from the current policy.

A backend is anything with `generate(model, prompt_ids, n, greedy, seed, path) -> list[list[Sample]]`, chosen
by name from `BACKENDS`; `path` is the checkpoint on disk holding the same weights as `model`. The
transformers backend uses the in-memory policy, so no checkpoint round trip is needed between training and
sampling; the vllm backend (optune.generation_vllm) loads `path`. A backend that holds memory of its own
also has `release()`, which the loop calls before training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from optune.config import GenerationConfig, PolicyConfig
from optune.errors import UserError


@dataclass
class Sample:
    text: str
    """Decoded response without special tokens."""
    ids: list[int]
    """Response token ids as generated, ending with EOS when `eos` is true (trained on exactly these)."""
    eos: bool
    """Whether the response ended with EOS (False: cut at max_new_tokens)."""
    logp: float | None = None
    """Sum of the response tokens' log-probs under the sampling policy itself (temperature 1, no top-p), where
    the backend provides it (vllm); usable as the DPO reference log-prob when that policy is the reference."""


class Generator(Protocol):
    def generate(self, model, prompt_ids: list[list[int]], n: int, greedy: bool, seed: int,
                 path: str | None = None) -> list[list[Sample]]:
        ...


def encode_prompt(tokenizer, record: dict, max_tokens: int) -> list[int]:
    """Chat-template token ids of a prompt record (earlier turns in record["history"]), left-truncated."""
    messages = list(record.get("history") or []) + [{"role": "user", "content": record["prompt"]}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    return list(ids)[-max_tokens:]


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


def _vllm(cfg: GenerationConfig, tokenizer, policy: PolicyConfig) -> Generator:
    # vLLM is optional: imported only when chosen
    from optune.generation_vllm import VLLMGenerator

    return VLLMGenerator(cfg, tokenizer, policy)


# name -> factory(generation config, tokenizer, policy config)
BACKENDS = {
    "transformers": lambda cfg, tokenizer, policy: TransformersGenerator(cfg, tokenizer),
    "vllm": _vllm,
}


def make_generator(cfg: GenerationConfig, tokenizer, policy: PolicyConfig | None = None) -> Generator:
    if cfg.backend not in BACKENDS:
        raise UserError(f"unknown generation backend {cfg.backend!r}; choose one of {', '.join(BACKENDS)}")
    return BACKENDS[cfg.backend](cfg, tokenizer, policy or PolicyConfig())
