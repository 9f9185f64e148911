"""IFEval responses from a checkpoint: greedy, chat template, optune's decode loop, saved as they come.

Generation goes through optune's own backend (optune.generation, transformers backend, impl "decode": the loop
runs use, greedy-equal to `model.generate`). Responses are saved to a JSON file after every batch with the
model and the settings that produced them; a rerun with the same model and settings reuses every saved
response (an interrupted run goes on where it stopped, a larger --limit generates only the new prompts).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from optune.errors import UserError
from optune.eval.export import write_json_atomic
from optune.eval.ifeval import IFEvalItem
from optune.eval.systems import read_saved, weights_fingerprint


@dataclass(frozen=True)
class GreedySettings:
    max_new_tokens: int = 1280
    """Token budget per response (lm-eval's IFEval task: 1280)."""
    batch_size: int = 8
    """Prompts per generate call (does not change the responses' definition, so not part of the saved source)."""
    device: str = "cpu"

    def source(self) -> dict:
        """What defines the responses, saved with them."""
        return {"max_new_tokens": self.max_new_tokens, "decoding": "greedy", "impl": "decode",
                "chat_template": True}

    def public(self) -> dict:
        return asdict(self)


class GreedyGenerator:
    """`generate(prompts) -> responses` for one local checkpoint, through optune's decode loop."""

    def __init__(self, path: str | Path, settings: GreedySettings):
        from optune.choices import GenerationImpl
        from optune.config.run import GenerationConfig
        from optune.generation import make_generator
        from optune.models.policy import load_model, load_tokenizer

        self.settings = settings
        self.tokenizer = load_tokenizer(str(path))
        if not getattr(self.tokenizer, "chat_template", None):
            raise UserError(f"{path}: the tokenizer has no chat template; IFEval prompts an instruction-tuned model")
        self.model = load_model(str(path), device=settings.device).eval()
        self.backend = make_generator(GenerationConfig(max_new_tokens=settings.max_new_tokens,
                                                       impl=GenerationImpl.DECODE), self.tokenizer)
        self.max_prompt_tokens = self.model.config.max_position_embeddings - settings.max_new_tokens
        if self.max_prompt_tokens < 1:
            raise UserError(f"--max-new-tokens {settings.max_new_tokens} leaves no room for a prompt in {path}'s "
                            f"{self.model.config.max_position_embeddings} positions")

    def prompt_ids(self, prompts: Sequence[str]) -> list[list[int]]:
        from optune.generation import encode_prompt
        from optune.prompt import Prompt

        return [encode_prompt(self.tokenizer, Prompt(id=str(i), text=p), self.max_prompt_tokens)
                for i, p in enumerate(prompts)]

    def __call__(self, prompts: Sequence[str]) -> list[str]:
        ids = self.prompt_ids(prompts)
        samples = self.backend.generate(self.model, ids, n=1, greedy=True, seed=0)
        return [s[0].text for s in samples]


def model_source(path: Path, settings: GreedySettings) -> dict:
    """The model (folder and weights) and the settings that define its responses."""
    return {"model": str(path.resolve()), "weights": weights_fingerprint(path), "generation": settings.source()}


def saved_responses(path: Path, source: dict) -> dict[int, tuple[str, str]]:
    """key -> (prompt, response) saved in `path` for this source; nothing for another source or a damaged file."""
    try:
        saved = read_saved(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        saved = None
    if saved is None or saved.source != source:
        return {}
    return {r["key"]: (r["prompt"], r["response"]) for r in saved.rows
            if isinstance(r, dict) and isinstance(r.get("key"), int) and isinstance(r.get("prompt"), str)
            and isinstance(r.get("response"), str)}


def generate_responses(path: Path, source: dict, items: Sequence[IFEvalItem],
                       make_generator: Callable[[], Callable[[Sequence[str]], list[str]]], batch_size: int,
                       label: str = "") -> list[str]:
    """One response per item: those saved in `path` for `source`, the others generated in batches (the shortest
    prompts first) and saved after each batch."""
    done = saved_responses(path, source)
    todo = sorted((i for i in items if done.get(i.key, ("", ""))[0] != i.prompt), key=lambda i: len(i.prompt))
    if todo:
        generate = make_generator()
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            responses = generate([i.prompt for i in batch])
            if len(responses) != len(batch):
                raise ValueError(f"the generator returned {len(responses)} responses for {len(batch)} prompts")
            for item, response in zip(batch, responses):
                done[item.key] = (item.prompt, response)
            rows = [{"key": k, "prompt": p, "response": r} for k, (p, r) in done.items()]
            write_json_atomic(path, {"source": source, "rows": rows})
            print(f"\r{label}generated {min(start + batch_size, len(todo))}/{len(todo)}",
                  end="\n" if start + batch_size >= len(todo) else "", file=sys.stderr, flush=True)
    return [done[i.key][1] for i in items]
