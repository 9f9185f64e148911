"""Generation backends: sample n responses per prompt from the current policy.

A backend is anything with `generate(model, prompt_ids, n, greedy, seed, path) -> list[list[Sample]]`
(`base.Generator`), chosen by name from `BACKENDS`; `path` is the checkpoint on disk holding the same
weights as `model`. The transformers backend (`hf`) samples from the in-memory policy, so no checkpoint
round trip is needed between training and sampling; the vllm backend (`vllm`, imported only when chosen)
loads `path`. A backend that holds memory of its own also has `pause()`, which the loop calls before
training, and `release()`, called at the end of a run.
"""

from __future__ import annotations

from optune.choices import GenerationBackend
from optune.config.run import GenerationConfig, PolicyConfig
from optune.generation.base import Generator, Sample, encode_prompt, left_pad, split_response
from optune.generation.hf import TransformersGenerator, eos_ids


def _vllm(cfg: GenerationConfig, tokenizer, policy: PolicyConfig) -> Generator:
    from optune.generation.vllm import VLLMGenerator

    return VLLMGenerator(cfg, tokenizer, policy)


# generation.backend -> factory(generation config, tokenizer, policy config)
BACKENDS = {
    GenerationBackend.TRANSFORMERS: lambda cfg, tokenizer, policy: TransformersGenerator(cfg, tokenizer),
    GenerationBackend.VLLM: _vllm,
}


def make_generator(cfg: GenerationConfig, tokenizer, policy: PolicyConfig | None = None) -> Generator:
    return BACKENDS[GenerationBackend(cfg.backend)](cfg, tokenizer, policy or PolicyConfig())


__all__ = ["BACKENDS", "Generator", "Sample", "TransformersGenerator", "encode_prompt", "eos_ids", "left_pad",
           "make_generator", "split_response"]
