"""Updating a running vLLM engine's weights in place from a checkpoint (`generation.vllm_update=inplace`).

vLLM 0.32's own in-place reload (`Worker.reload_weights`, the layerwise reload that its weight-transfer
engines use too) reads the new checkpoint into every layer and redoes each loaded layer's
`process_weights_after_loading`. On the CPU that processing packs each linear layer's weight into a
closure (`layer.cpu_linear`: oneDNN or sgl kernels) and drops the plain weight. A tied output layer
(`lm_head` sharing `embed_tokens`' weight, as in SmolLM2 and optune's tiny Llama) gets no checkpoint
tensor of its own, so the reload leaves it with its old packed weight while the shared tensor under it
holds the new values: greedy answers then differ from a fresh engine's on the same checkpoint, silently
(measured on a tiny Llama: all 6 greedy answers differed, log-probs up to 33 nats apart). Redoing the packing
of every layer that keeps its plain weight (embeddings and the output layer) after the reload makes the
engine answer as a fresh one: the same greedy tokens and log-probs, 0.0 apart (tests/e2e/test_vllm_update.py;
benchmarks/vllm_update.py on SmolLM2-135M).

The two other routes tried on the CPU fail: `load_weights` of the model through `collective_rpc` stops at
"'Parameter' object has no attribute 'weight_loader'" (packing replaced the weights by plain empty
Parameters), and sleep/wake_up are no-ops there ("sleep mode is not supported on CPU").

`OptuneWorker` is mixed into vLLM's worker class (`LLM(worker_extension_cls=...)`); the generator calls
its method by name through `collective_rpc`, so nothing is pickled but a path and a seed. This module
imports vLLM only inside the worker, where it is loaded already.
"""

from __future__ import annotations

WORKER_EXTENSION = "optune.generation.vllm_update.OptuneWorker"


def repack_kept_weights(model) -> list[str]:
    """Redo the CPU packing of every layer that keeps its plain weight after loading (embeddings and the
    output layer, tied or not); returns their names. Layers whose packing dropped the weight were
    repacked by the reload itself. A no-op off the CPU, where no layer has `cpu_linear`."""
    redone = []
    for name, layer in model.named_modules():
        method = getattr(layer, "quant_method", None)
        weight = getattr(layer, "weight", None)
        if method is None or not hasattr(layer, "cpu_linear") or weight is None or weight.numel() == 0:
            continue
        method.process_weights_after_loading(layer)
        redone.append(name)
    return redone


class OptuneWorker:
    """Methods mixed into each vLLM worker; `self` is the worker (vllm.v1.worker.gpu_worker.Worker or its
    CPU subclass)."""

    def optune_load_checkpoint(self, path: str, seed: int | None = None) -> list[str]:
        """Load the checkpoint at `path` into the running model in place, then reseed the worker's random
        state as an engine started with `seed` is (the CPU sampler draws from it). Returns the layers whose
        CPU packing was redone."""
        from vllm.utils.torch_utils import set_random_seed

        self.reload_weights(weights_path=path)  # type: ignore[attr-defined]
        redone = repack_kept_weights(self.model_runner.get_model())  # type: ignore[attr-defined]
        if seed is not None:  # as the worker does when it has started (compile_or_warm_up_model)
            set_random_seed(seed, self.parallel_config.data_parallel_index)  # type: ignore[attr-defined]
        return redone
