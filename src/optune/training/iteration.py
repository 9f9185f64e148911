"""One iteration's training as the loop runs it: reference log-probs (stored once), LoRA, DPO/wDPO updates, and
pi_{t+1} saved as one atomic checkpoint directory (with its training metrics and log)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from optune.clock import Clock, progress
from optune.config.run import LoraConfig, PolicyConfig, TrainConfig
from optune.distributed import Dist
from optune.errors import UserError
from optune.losses import PreferenceLoss
from optune.models import lora
from optune.models.policy import load_model
from optune.pairs import Pair
from optune.store import RunStore, damage, read_json, write_json, write_jsonl
from optune.training.logps import reference_logps
from optune.training.reference import References, ReferenceSource
from optune.training.update import TrainHooks, TrainInputs, train_iteration

if TYPE_CHECKING:  # transformers is heavy; only its types are named here
    from transformers import PreTrainedTokenizerBase


def load_checkpoint(path, policy: PolicyConfig):
    """A checkpoint this run saved, as `load_model` loads it; a damaged one raises ValueError (one line)."""
    from safetensors import SafetensorError

    try:  # first, so that a broken config.json is named as such (transformers' message is long)
        read_json(Path(path) / "config.json")
    except ValueError as err:
        raise ValueError(f"config.json: {damage(err)}") from None
    try:
        return load_model(str(path), policy.dtype, policy.device)
    except (OSError, ValueError, UserError, SafetensorError) as err:
        # load_model's UserError starts with the path, which the caller names already
        raise ValueError(str(err).removeprefix(f"cannot load model {path}: ") or type(err).__name__) from None


@dataclass
class Trainer:
    """pi_t -> pi_{t+1} on an iteration's pairs, built once per run with what it uses."""

    store: RunStore
    loss: PreferenceLoss
    train: TrainConfig
    policy: PolicyConfig
    lora: LoraConfig
    tokenizer: PreTrainedTokenizerBase
    """Saved with every checkpoint; its pad id pads the batches."""
    references: ReferenceSource
    seed: int = 0
    dist: Dist = field(default_factory=Dist)

    def __call__(self, t: int, pairs: list[Pair], model, clock: Clock) -> tuple[object, dict]:
        """pi_t (`model`) -> (pi_{t+1}, the training metrics); the checkpoint (with its metrics) is written as one
        atomic directory."""
        store = self.store
        done = self.trained_before(t)
        if done is not None:
            if store.writer:  # a kill between the checkpoint's rename and this unlink left it behind
                store.train_state(t).unlink(missing_ok=True)
            return done
        with clock.phase("training"):
            model = lora.attach(model, self.lora)  # pi_t itself without LoRA
            inputs = TrainInputs(pairs, self.references.compute(t, pairs, model), self.tokenizer.pad_token_id,
                                 seed=self.seed + t)
            log_rows: list[dict] = []
            with progress(f"iter {t} train", len(pairs) * self.train.epochs, self.dist.is_main) as bar:
                hooks = TrainHooks(progress=bar, log=log_rows.append,
                                   state_path=store.train_state(t) if store.writer else None,
                                   state_then=f"training iteration {t} from its start")
                metrics = train_iteration(model, inputs, self.train, self.loss, hooks, self.dist)
            if pairs and not self.dist.active:
                metrics.update(self.pair_movement(t, pairs, model))
            return self.save(t, model, metrics, log_rows), metrics

    def save(self, t: int, model, metrics: dict, log_rows: list[dict]):
        """pi_{t+1} written as iter_t/checkpoint (main process), and the policy every process continues from."""
        state_dict = self.dist.full_state_dict()  # unsharded weights (FSDP/ZeRO-3); every process takes part
        trained = model

        def write(tmp):
            nonlocal trained
            trained = lora.save_merged(model, tmp, state_dict)
            self.tokenizer.save_pretrained(tmp)
            write_json(tmp / "train_metrics.json", metrics)
            write_jsonl(tmp / "train_log.jsonl", log_rows)

        self.store.save_dir(self.store.checkpoint(t), write)  # main process only
        if self.store.writer:
            self.store.train_state(t).unlink(missing_ok=True)  # the checkpoint supersedes the mid-iteration state
        if self.dist.active:  # every process continues from the saved pi_{t+1}, whatever wrapped it
            self.dist.barrier()
            trained = load_model(str(self.store.checkpoint(t)), self.policy.dtype, self.policy.device)
        return trained

    def trained_before(self, t: int) -> tuple[object, dict] | None:
        """(pi_{t+1}, its training metrics) where an earlier attempt of this unfinished iteration saved its
        checkpoint; None where there is none, or it is damaged (removed: training is redone from its start)."""
        store = self.store
        if not store.train_metrics(t).is_file():
            return None
        try:
            return load_checkpoint(store.checkpoint(t), self.policy), read_json(store.train_metrics(t))
        except ValueError as err:
            store.discard(store.checkpoint(t), damage(err), f"training iteration {t} again")
            return None

    def pair_movement(self, t: int, pairs: list[Pair], model) -> dict[str, float]:
        """Mean log-probs of the trained pairs under the reference (before: pi_t where pi_t is the reference) and
        under the trained policy (after), and DPO's implicit margin after training: whether training raised the
        chosen responses or only lowered the rejected ones more (both can fall: a known DPO failure)."""
        tc = self.train
        before = self.references.stored(t)  # with the references training filled in
        chosen, rejected = reference_logps(model, pairs, self.tokenizer.pad_token_id, tc.batch_size * 2, tc.use_bf16,
                                           packing=tc.packing)
        after = References.of(chosen, rejected)
        margin = self.loss.implicit_margin(after.chosen, after.rejected, before.chosen, before.rejected)
        prefix = "before" if self.references.choice.is_current(t) else "reference"
        return {f"logps/chosen_{prefix}": float(before.chosen.mean()),
                f"logps/rejected_{prefix}": float(before.rejected.mean()),
                "logps/chosen_after": float(after.chosen.mean()), "logps/rejected_after": float(after.rejected.mean()),
                "rewards/margins_after": float(margin.mean())}
