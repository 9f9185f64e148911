"""Every named choice a config offers, one `StrEnum` each.

Config fields are typed with these, so loading a YAML value or a `key=value` override checks it against the
members (optune.config.schema), `--help-config` lists them, and the code compares and dispatches on them. A
member equals its string ("wdpo" == LossType.WDPO), so config.yaml stays plain text.
"""

from __future__ import annotations

from enum import StrEnum


class LossType(StrEnum):
    WDPO = "wdpo"
    """Eq. 6: each pair's DPO loss weighted by sigmoid(beta2 * reward gap)."""
    DPO = "dpo"
    """Eq. 5: plain DPO."""


class Reference(StrEnum):
    PREVIOUS = "previous"
    """pi_t, the policy the iteration starts from (the paper)."""
    INITIAL = "initial"
    """pi_0, kept fixed."""

    def is_current(self, t: int) -> bool:
        """Whether pi_t, the policy iteration t starts from, is the reference at iteration t (always for
        "previous"; for "initial" only at iteration 0, where pi_t is pi_0)."""
        return self is Reference.PREVIOUS or t == 0


class SelectionStrategy(StrEnum):
    OPTUNE = "optune"
    """The ceil(rho * n) prompts with the lowest chosen reward."""
    RANDOM = "random"
    """The same count, uniformly at random."""
    MIDDLE = "middle"
    """The same count from the middle of the reward ranking (around the median chosen reward): neither the
    prompts the policy already answers best nor the lowest, which arXiv 2510.05534 finds hurt iterative DPO."""
    FULL = "full"
    """Every prompt (rho ignored)."""


class GenerationBackend(StrEnum):
    TRANSFORMERS = "transformers"
    VLLM = "vllm"


class GenerationImpl(StrEnum):
    AUTO = "auto"
    """decode on a CPU, generate on CUDA (GenerationConfig.resolved_impl)."""
    DECODE = "decode"
    GENERATE = "generate"


class RewardBackendName(StrEnum):
    VERIFIABLE = "verifiable"
    CALLABLE = "callable"
    HF = "hf"
    REMOTE = "remote"
    LLM = "llm"
    LENGTH = "length"
    """A length penalty by word count (no model); see reward.target_words and reward.length_penalty."""
    MIX = "mix"
    """A weighted sum of named components (reward.components), each one of the other backends."""


class LengthPenalty(StrEnum):
    """Which side of reward.target_words the length backend penalises (by the shortfall or excess / target)."""

    SHORT = "short"
    """Only responses shorter than the target (a floor): score -max(0, target - words) / target, in [-1, 0]."""
    LONG = "long"
    """Only responses longer than the target (a ceiling): score -max(0, words - target) / target, <= 0."""
    BOTH = "both"
    """Any distance from the target: score -|words - target| / target, <= 0."""


class RewardRoute(StrEnum):
    CLASSIFY = "classify"
    POOLING = "pooling"
    OPTUNE = "optune"


class Constrained(StrEnum):
    """How an LLM rater or judge is made to write a well-formed score line."""

    NONE = "none"
    STRUCTURED_OUTPUTS = "structured_outputs"
    GUIDED_REGEX = "guided_regex"


class Optimizer(StrEnum):
    RMSPROP = "rmsprop"
    ADAMW = "adamw"
    SGD = "sgd"


class LrSchedule(StrEnum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"


class Bf16(StrEnum):
    """train.bf16: "auto" is resolved to "true" or "false" when a run starts (optune.training.precision)."""

    AUTO = "auto"
    TRUE = "true"
    FALSE = "false"


class Dtype(StrEnum):
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


class VllmUpdate(StrEnum):
    AUTO = "auto"
    """inplace on the CPU (tested there), restart on GPUs (until a GPU runs the in-place path)."""
    INPLACE = "inplace"
    """One engine per run; each new checkpoint is loaded into it in place (optune.generation.vllm_update)."""
    RESTART = "restart"
    """A new engine for each checkpoint, shut down before training."""


class VllmDtype(StrEnum):
    POLICY = "policy"
    AUTO = "auto"
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"
    FLOAT16 = "float16"
