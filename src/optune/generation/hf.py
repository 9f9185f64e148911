"""The transformers backend: batched sampling from the in-memory policy (no checkpoint round trip).

Two implementations, chosen by `generation.impl`: "decode", optune's own decode loop
(optune.generation.decode: same sampling rule, faster on a CPU, and each response's raw log-prob for the DPO
reference), and "generate", transformers' `model.generate` (the samples of runs made before "decode"
existed, seed for seed); "auto" (the default) is decode on a CPU and generate on CUDA, decided by the device
the model is on (GenerationConfig.resolved_impl).
"""

from __future__ import annotations

import sys

import torch

from optune.config.run import GenerationConfig
from optune.errors import UserError
from optune.generation.base import Sample, left_pad, split_response, stop_ids

# Logits processors `model.generate` would add from a checkpoint's own generation_config, with their
# neutral values; the decode loop applies none of them, so a checkpoint that sets one goes to model.generate.
_PROCESSOR_FIELDS = {
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "min_p": 0.0,
    "min_length": 0, "bad_words_ids": None, "suppress_tokens": None, "begin_suppress_tokens": None,
    "forced_bos_token_id": None, "forced_eos_token_id": None, "sequence_bias": None,
    "exponential_decay_length_penalty": None, "guidance_scale": 1.0, "watermarking_config": None,
}


def eos_ids(model, tokenizer) -> list[int]:
    """The ids that end a response of this in-memory model (`base.stop_ids`)."""
    return stop_ids(model.generation_config.eos_token_id, tokenizer)


def checkpoint_processors(generation_config) -> list[str]:
    """The logits processors a checkpoint's generation_config turns on ("name=value"), which `decode` lacks."""
    found = []
    for name, neutral in _PROCESSOR_FIELDS.items():
        value = getattr(generation_config, name, None)
        if value not in (None, neutral, [], {}):
            found.append(f"{name}={value!r}")
    return found


class TransformersGenerator:
    """Batched sampling (or greedy decoding for evaluation) from the in-memory model."""

    def __init__(self, cfg: GenerationConfig, tokenizer):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self._warned = False

    def generate(self, model, prompt_ids: list[list[int]], n: int, greedy: bool = False,
                 seed: int = 0, path: str | None = None) -> list[list[Sample]]:
        stop = eos_ids(model, self.tokenizer)
        was_training = model.training
        model.eval()
        try:
            impl = self.cfg.resolved_impl(model.device.type)
            if impl == "generate" or self._falls_back(model):
                stop_set = set(stop)
                generated = self._model_generate(model, prompt_ids, n, greedy, seed, stop)
                rows: list[tuple[list[int], bool, float | None]] = [(*split_response(tokens, stop_set), None)
                                                                     for tokens in generated]
            else:
                rows = self._decode(model, prompt_ids, n, greedy, seed, stop)
        finally:
            model.train(was_training)
        samples = [Sample(text=self.tokenizer.decode(ids, skip_special_tokens=True).strip(), ids=ids, eos=ended,
                          logp=logp) for ids, ended, logp in rows]
        return [samples[i * n:(i + 1) * n] for i in range(len(prompt_ids))]

    def _falls_back(self, model) -> bool:
        """Whether impl "decode" hands this model to model.generate: its checkpoint's generation_config turns on
        logits processors the decode loop lacks (e.g. Qwen2.5-Instruct's repetition_penalty), which
        model.generate applies. Said once per generator; refused when the log-probs must serve as references."""
        unsupported = checkpoint_processors(model.generation_config)
        if not unsupported:
            return False
        if self.cfg.sampler_logprobs:
            raise UserError(f"the checkpoint's generation_config sets {', '.join(unsupported)}, which "
                            "generation.impl=decode does not apply, and generation.sampler_logprobs needs "
                            "decode's log-probs; set generation.sampler_logprobs=false")
        if not self._warned:
            self._warned = True
            print(f"note: the checkpoint's generation_config sets {', '.join(unsupported)}; generating with "
                  "model.generate, which applies it (generation.impl=generate)", file=sys.stderr)
        return True

    def _decode(self, model, prompt_ids, n, greedy, seed, stop) -> list[tuple[list[int], bool, float | None]]:
        from optune.generation.decode import DecodeSettings, decode  # imports transformers

        cfg = self.cfg
        # sampler log-probs as DPO references must match training's forward pass: the same matmul kernels
        settings = DecodeSettings(max_new_tokens=cfg.max_new_tokens, min_new_tokens=cfg.min_new_tokens,
                                  greedy=greedy, temperature=cfg.temperature, top_p=cfg.top_p,
                                  packed=not cfg.sampler_logprobs)
        out = decode(model, prompt_ids, n, self.tokenizer.pad_token_id, stop, settings, seed)
        return [(d.tokens, d.ended, d.logp) for d in out]

    @torch.inference_mode()
    def _model_generate(self, model, prompt_ids, n, greedy, seed, stop) -> list[list[int]]:
        batch = [ids for ids in prompt_ids for _ in range(n)]
        input_ids, mask = left_pad(batch, self.tokenizer.pad_token_id)
        device = next(model.parameters()).device
        torch.manual_seed(seed)
        sampling = {} if greedy else {"top_p": self.cfg.top_p, "temperature": self.cfg.temperature}
        out = model.generate(
            input_ids=input_ids.to(device), attention_mask=mask.to(device), max_new_tokens=self.cfg.max_new_tokens,
            min_new_tokens=self.cfg.min_new_tokens or None,
            pad_token_id=self.tokenizer.pad_token_id, eos_token_id=stop, do_sample=not greedy,
            top_k=None, **sampling,
        )
        return out[:, input_ids.shape[1]:].tolist()
