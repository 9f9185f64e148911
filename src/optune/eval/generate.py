"""One response per prompt from a checkpoint, with the settings recorded (the evaluated system).

The evaluation only needs `generate(prompts) -> responses`; this module is a small transformers
default (chat template, left padding, seeded sampling) so `optune eval` works on its own. The
shared generation backend of the training loop can replace it by passing another callable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from optune.errors import UserError


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    batch_size: int = 8

    def validate(self) -> None:
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise UserError("max new tokens and batch size must be >= 1")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise UserError("temperature must be >= 0 and top_p in (0, 1]")

    def public(self) -> dict:
        return asdict(self)


def _prompt_texts(tokenizer, prompts: list[str]) -> list[str]:
    """Apply the chat template when the tokenizer has one, as the policy was tuned with it."""
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                              add_generation_prompt=True) for p in prompts]
    return list(prompts)


class CheckpointGenerator:
    """Callable `generate(prompts) -> responses` over a local HF checkpoint on the CPU (or given device)."""

    def __init__(self, path: str | Path, settings: GenerationSettings, device: str = "cpu"):
        settings.validate()
        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"not a model checkpoint (no config.json): {path}")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.settings = settings
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
        self._torch = torch

    def __call__(self, prompts: list[str]) -> list[str]:
        s = self.settings
        self._torch.manual_seed(s.seed)
        texts = _prompt_texts(self.tokenizer, prompts)
        out: list[str] = []
        for start in range(0, len(texts), s.batch_size):
            batch = self.tokenizer(texts[start:start + s.batch_size], return_tensors="pt", padding=True,
                                   add_special_tokens=not getattr(self.tokenizer, "chat_template", None))
            batch = {k: v.to(self.device) for k, v in batch.items()}
            sampling = {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p} if s.temperature > 0 \
                else {"do_sample": False}
            with self._torch.no_grad():
                generated = self.model.generate(**batch, max_new_tokens=s.max_new_tokens,
                                                pad_token_id=self.tokenizer.pad_token_id, **sampling)
            new_tokens = generated[:, batch["input_ids"].shape[1]:]
            out.extend(t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        return out
