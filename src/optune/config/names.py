"""The run config's key tables: which keys a resume may change (deployment-only), TRL's names for optune's keys,
and which keys hold paths. optune.config.run re-exports them; the dataclasses they name are there."""

from __future__ import annotations

from optune.config.keys import Alias, PathKind, mapped

DEPLOYMENT_KEYS = (
    # where and how a served reward (or a mix's served component) is reached; the same model answers the same
    "reward.url", "reward.api_key_env", "reward.timeout_s", "reward.max_retries", "reward.concurrency",
    # the llm reward's reply cache: a reply found there is the one the same rater gave (its key holds the
    # rater, the prompt and the try); the scores already stored are never asked again
    "reward.cache",
    # trackers only mirror metrics.jsonl
    "report_to",
    # which device holds the policy: the same numbers on the same kind of device (moving between a CPU and a
    # GPU changes rounding, so the finished run is no longer bit-for-bit one run)
    "policy.device",
    # how often the training state is saved; it is saved and loaded exactly, so training goes on the same
    "train.save_steps",
    # activations recomputed in the backward pass instead of kept: the same operations, the same numbers
    "train.gradient_checkpointing",
)
"""Keys that say where and how a run runs, not what it computes: `--resume DIR key=value` may change these
(and only these); the run's config.yaml then records the new values, and its fingerprint (optune.runner.resume)
leaves them out. A component's key (reward.components[i].url) counts as its reward.* key.

Not deployment-only, although they look it: generation.batch_size (each generation batch has its own seed,
and finished batches are files: optune.store.RunStore.batched), reward.batch_size (scoring batches are files
too, and a mix's standardize works per batch), generation.tensor_parallel_size and
generation.vllm_enforce_eager (another split of the matmuls or compiled kernels round differently, so
samples change), generation.vllm_update (the same weights either way, but vLLM's CPU sampler may draw
differently in an engine with another history), generation.vllm_memory_fraction (a smaller KV cache makes
vLLM preempt and schedule sequences differently)."""


def _optim(value):
    optim = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "adamw": "adamw",
             "rmsprop": "rmsprop", "sgd": "sgd"}
    return mapped("optim", optim, "train.optimizer is one of rmsprop, adamw, sgd (optim=adamw_torch is adamw)")(value)


def _lr_scheduler(value):
    schedules = {"linear": "linear", "cosine": "cosine", "constant_with_warmup": "constant"}
    return mapped("lr_scheduler_type", schedules, "train.lr_schedule is linear, cosine or constant (after "
                  "train.warmup_ratio's warmup: TRL's constant_with_warmup; for TRL's constant set warmup_ratio=0 "
                  "and lr_scheduler_type=constant_with_warmup)")(value)


TRL_ALIASES = {
    "beta": Alias("loss.beta1"), "learning_rate": Alias("train.lr"),
    "per_device_train_batch_size": Alias("train.batch_size"), "gradient_accumulation_steps": Alias("train.grad_accum"),
    "num_train_epochs": Alias("train.epochs"), "lr_scheduler_type": Alias("train.lr_schedule", _lr_scheduler),
    "max_prompt_length": Alias("policy.max_prompt_tokens"), "max_new_tokens": Alias("generation.max_new_tokens"),
    "max_completion_length": Alias("generation.max_new_tokens"), "optim": Alias("train.optimizer", _optim),
    "warmup_ratio": Alias("train.warmup_ratio"), "max_grad_norm": Alias("train.max_grad_norm"),
}
"""TRL's (transformers' TrainingArguments') names, accepted in config files, overrides and optune.run's keyword
arguments as the keys they mean (`seed` is the same in both); listed by --help-config."""

PATH_KEYS = {
    "data.train": PathKind.PATHS, "data.heldout": PathKind.PATHS, "policy.model": PathKind.EXISTING,
    "reward.model": PathKind.EXISTING, "reward.function": PathKind.FUNCTION, "reward.cache": PathKind.PATH,
    "init_from": PathKind.PATH, "output_dir": PathKind.PATH,
}
"""Keys holding paths: relative ones in a config file are relative to that file's folder (made absolute as it
loads; optune.config.keys.resolve_paths), the reward keys inside reward.components too. policy.model and
reward.model only where such a path exists (else a hub id or a served model's name)."""
