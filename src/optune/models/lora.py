"""LoRA through peft: train a low-rank adapter per iteration, reference = the same model, adapter disabled.

Why merge every iteration: with reference pi_t (the paper's Eq. 5) the reference of iteration t must be
pi_t exactly. Each iteration therefore starts from the plain model pi_t, attaches a *fresh* adapter (its B
matrices are zero, so base + adapter = pi_t), computes the reference log-probs with the adapter disabled
(no second copy of the model), trains only the adapter, and merges it: pi_{t+1} = pi_t + B_t A_t. The next
iteration's "adapter disabled" is then pi_{t+1}, as the method needs.

Checkpoints: `iter_t/checkpoint/` holds the merged pi_{t+1} (a plain transformers checkpoint that vLLM,
evaluation and benchmarks load as they are) and `iter_t/checkpoint/adapter/` the adapter trained at t
(peft format, relative to pi_t = the previous checkpoint); `merge_adapter` rebuilds pi_{t+1} from them.
With loss.reference "initial" the reference pi_0 is loaded separately (a second copy), as without LoRA.

peft is optional: imported only when lora.r > 0.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from optune.config.run import LoraConfig
from optune.errors import UserError

ADAPTER_DIR = "adapter"


def _peft():
    try:
        import peft
    except ImportError:
        raise UserError("lora.r > 0 needs peft: pip install 'optune[lora]'") from None
    return peft


def enabled(cfg: LoraConfig) -> bool:
    return cfg.r > 0


def attach(model, cfg: LoraConfig):
    """A fresh adapter on `model` (B = 0, so the wrapped model computes exactly what `model` did)."""
    if not enabled(cfg):
        return model
    peft = _peft()
    config = peft.LoraConfig(r=cfg.r, lora_alpha=cfg.alpha, target_modules=list(cfg.target_modules),
                             lora_dropout=cfg.dropout, bias="none", task_type="CAUSAL_LM")
    try:
        return peft.get_peft_model(model, config)
    except ValueError as err:
        raise UserError(f"lora.target_modules {cfg.target_modules}: {str(err).splitlines()[0]}") from None


def is_adapted(model) -> bool:
    return hasattr(model, "disable_adapter") and hasattr(model, "merge_and_unload")


def adapter_disabled(model):
    """Context in which `model` computes its base weights (the reference); a no-op without an adapter."""
    return model.disable_adapter() if is_adapted(model) else contextlib.nullcontext()


def save_merged(model, out_dir: Path, state_dict: dict | None = None):
    """Save the adapter to out_dir/adapter, merge it, save the merged model to out_dir; return the merged model.

    state_dict: the full weights where the model is sharded across processes (FSDP/ZeRO-3), else None.
    """
    if not is_adapted(model):
        model.save_pretrained(out_dir, safe_serialization=True, state_dict=state_dict)
        return model
    model.save_pretrained(out_dir / ADAPTER_DIR, safe_serialization=True)
    merged = model.merge_and_unload()
    for param in merged.parameters():
        param.requires_grad_(True)  # peft froze the base; the next iteration's model starts plain again
    merged.save_pretrained(out_dir, safe_serialization=True)
    return merged


def merge_adapter(base_path: str, adapter_path: str, out_dir: str, dtype: str = "float32") -> Path:
    """pi_{t+1} from pi_t (base_path) and the adapter trained at t, saved as a plain checkpoint."""
    from optune.models.policy import load_model, load_tokenizer

    peft = _peft()
    if not (Path(adapter_path) / "adapter_config.json").is_file():
        raise UserError(f"{adapter_path} is not a peft adapter (no adapter_config.json)")
    model = peft.PeftModel.from_pretrained(load_model(base_path, dtype), adapter_path).merge_and_unload()
    model.save_pretrained(out_dir, safe_serialization=True)
    load_tokenizer(base_path).save_pretrained(out_dir)
    return Path(out_dir)
