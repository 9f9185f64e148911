"""One response per prompt from a checkpoint, with the settings recorded (the evaluated system).

The evaluation only needs `generate(prompts) -> responses`; this module is a small transformers
default (chat template, left padding, seeded sampling) so `optune eval` works on its own. The
shared generation backend of the training loop can replace it by passing another callable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from optune.config.schema import Range, check_ranges
from optune.errors import UserError
from optune.prompt import Prompt


@dataclass
class GenerationSettings:
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    batch_size: int = 8

    def public(self) -> dict:
        return asdict(self)


SETTINGS_RANGES = {"max_new_tokens": Range(1), "batch_size": Range(1), "temperature": Range(0),
                   "top_p": Range(0, 1, low_open=True), "seed": Range(0, 2**32 - 1)}
"""The generation settings and the values each may take."""


def validate(settings: GenerationSettings) -> None:
    check_ranges(settings, SETTINGS_RANGES, prefix="generation setting ")


class CheckpointGenerator:
    """Callable `generate(prompts) -> responses` over a local HF checkpoint, through the loop's own backend."""

    def __init__(self, path: str | Path, settings: GenerationSettings, device: str = "cpu"):
        validate(settings)
        path = Path(path)
        if not (path / "config.json").is_file():
            raise UserError(f"not a model checkpoint (no config.json): {path}")
        from optune.config.run import GenerationConfig
        from optune.generation import TransformersGenerator
        from optune.models.policy import load_model, load_tokenizer

        self.settings = settings
        self.tokenizer = load_tokenizer(str(path))
        self.model = load_model(str(path)).to(device).eval()
        self.backend = TransformersGenerator(
            GenerationConfig(max_new_tokens=settings.max_new_tokens, temperature=settings.temperature or 1.0,
                             top_p=settings.top_p), self.tokenizer)

    def __call__(self, prompts: list[str]) -> list[str]:
        from optune.generation import encode_prompt

        s = self.settings
        ids = [encode_prompt(self.tokenizer, Prompt(id=str(i), text=p), self.model.config.max_position_embeddings)
               for i, p in enumerate(prompts)]
        out: list[str] = []
        for start in range(0, len(ids), s.batch_size):
            samples = self.backend.generate(self.model, ids[start:start + s.batch_size], n=1,
                                            greedy=s.temperature == 0, seed=s.seed + start)
            out.extend(sample[0].text for sample in samples)
        return out
