"""Reference log-probs of an iteration's pairs: one object owns the record, its file, its sources and the fill-in.

DPO needs log ref(y) of every chosen and rejected response, computed before any update. They come from three
sources, cheapest first:
1. the sampler's own log-probs, where the responses were sampled at this iteration by pi_t and pi_t is the
   reference (generation.sampler_logprobs);
2. training's own forward on its starting weights, for the pairs its first steps meet, where those weights are
   the reference (`reference_from_training`): NaN in the record until training fills them in (`References.take`);
3. a forward pass of the reference (pi_t, or pi_0 loaded from its checkpoint) over the rest.
`ReferenceSource.compute` writes iter_t/ref_logps.json (JSON null where still to come) and gives the record,
which writes itself there again after each training step that filled some in (`References.flush`), so a
resumed iteration never computes a reference twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from optune.choices import Reference
from optune.clock import progress
from optune.config.run import PolicyConfig, TrainConfig
from optune.distributed import Dist
from optune.models import lora
from optune.models.policy import load_model
from optune.pairs import Pair
from optune.store import RunStore, damage, read_json
from optune.training.logps import reference_logps
from optune.training.schedule import step_plan, steps_on_start_weights


@dataclass
class References:
    """Each pair's reference log-probs (chosen, rejected), [N] float32 each.

    NaN marks a pair whose reference training's own forward gives (`reference_from_training`): the one
    encoding of "not yet computed" in memory; the run store writes it as JSON null.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    record: Callable[[References], None] | None = field(default=None, repr=False, compare=False)
    """Where `flush` writes the record after training filled some in (None: kept in memory only)."""
    filled: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def of(cls, chosen: list, rejected: list, device=None,
           record: Callable[[References], None] | None = None) -> References:
        """From two lists of floats (NaN, or None as read from JSON, where still to come)."""
        def tensor(values: list) -> torch.Tensor:
            return torch.tensor([math.nan if v is None else v for v in values], dtype=torch.float32, device=device)

        return cls(tensor(chosen), tensor(rejected), record)

    def missing(self) -> set[int]:
        return set((self.chosen.isnan() | self.rejected.isnan()).nonzero().flatten().tolist())

    def to(self, device) -> References:
        return References(self.chosen.to(device), self.rejected.to(device), self.record, self.filled)

    def take(self, idx: torch.Tensor, policy_chosen: torch.Tensor,
             policy_rejected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The references [B] of the pairs `idx` [B]; a missing one is filled from the policy's log-probs [B] of
        this forward, detached (train_iteration allows that only on the starting weights, where they are pi_t's)."""
        ref_c, ref_r = self.chosen[idx], self.rejected[idx]
        missing = ref_c.isnan() | ref_r.isnan()
        if missing.any():
            ref_c = torch.where(missing, policy_chosen.detach(), ref_c)
            ref_r = torch.where(missing, policy_rejected.detach(), ref_r)
            self.chosen[idx], self.rejected[idx] = ref_c, ref_r
            self.filled = True
        return ref_c, ref_r

    def flush(self) -> None:
        """Write the record where `take` filled some in since the last flush (before any training state is saved,
        so that a resumed iteration finds every reference its finished steps used)."""
        if self.filled and self.record is not None:
            self.record(self)
        self.filled = False


def reference_from_training(n_pairs: int, cfg: TrainConfig, seed: int) -> set[int]:
    """Indices of the pairs that single-process training meets while its weights are still the starting ones.

    Where the starting policy is the reference, those pairs need no reference pass: train_iteration takes
    their reference log-probs from its own forward (NaN in its `References`).
    """
    plan = step_plan(n_pairs, cfg, seed)
    return {i for step in plan[:steps_on_start_weights(cfg, len(plan))] for mb in step for i in mb}


def has_dropout(model) -> bool:
    """Whether a training-mode forward can differ from an evaluation one: a dropout layer or setting above 0."""
    if any("Dropout" in type(m).__name__ and getattr(m, "p", 0) > 0 for m in model.modules()):
        return True
    to_dict = getattr(getattr(model, "config", None), "to_dict", None)
    settings = to_dict() if to_dict is not None else {}
    return any(("dropout" in k or "pdrop" in k) and isinstance(v, (int, float)) and v > 0 for k, v in settings.items())


@dataclass
class ReferenceSource:
    """The reference log-probs of each iteration's pairs (loss.reference: pi_t, or pi_0), from the cheapest source."""

    store: RunStore
    choice: Reference
    initial_model_path: str
    """pi_0's checkpoint, loaded where pi_0 is the reference after iteration 0."""
    policy: PolicyConfig
    train: TrainConfig
    pad_id: int
    sampler_logprobs: bool = False
    """generation.sampler_logprobs: the sampler's own log-probs are trusted as pi_t's."""
    seed: int = 0
    dist: Dist = field(default_factory=Dist)

    def compute(self, t: int, pairs: list[Pair], model) -> References:
        """The record of iteration t, computed once before any update (so pi_t needs no second copy) or read back.

        NaN for the pairs training meets on its starting weights (`deferred`): training fills them in from its
        own forward (`References.take`), and the record writes them as it does (`References.flush`).
        """
        saved = self.saved(t)
        if saved is not None and saved["prompt_ids"] == [p.prompt_id for p in pairs]:
            return References.of(saved["chosen"], saved["rejected"], record=self._writer(t, pairs))
        sampled = self.sampled(t, pairs)
        later = self.deferred(t, len(pairs), model)
        todo = [p for i, (p, ref) in enumerate(zip(pairs, sampled)) if ref is None and i not in later]
        ref_model = model
        if not self.choice.is_current(t) and todo:
            ref_model = load_model(self.initial_model_path, self.policy.dtype, self.policy.device)
        tc = self.train
        with progress(f"iter {t} reference", len(todo), self.dist.is_main) as bar, lora.adapter_disabled(ref_model):
            mine = reference_logps(ref_model, self.dist.split(todo), self.pad_id, tc.batch_size * 2, tc.use_bf16, bar,
                                   tc.packing)
        del ref_model
        shares = self.dist.gather(mine)  # each process scored a contiguous share of the pairs
        computed = iter(zip([x for c, _ in shares for x in c], [x for _, r in shares for x in r]))
        refs = [ref if ref is not None else (math.nan, math.nan) if i in later else next(computed)
                for i, ref in enumerate(sampled)]
        ref = References.of([c for c, _ in refs], [r for _, r in refs], record=self._writer(t, pairs))
        self._write(t, pairs, ref, from_sampler=sum(r is not None for r in sampled), from_training=len(later))
        return ref

    def stored(self, t: int) -> References:
        """The record as training left it (every reference filled in): the `before` of iteration t's movement."""
        saved = read_json(self.store.ref_logps(t))
        return References.of(saved["chosen"], saved["rejected"])

    def saved(self, t: int) -> dict | None:
        """iter_t/ref_logps.json as saved, or None. A damaged one is removed, and so is the training state saved
        with it (training filled in references as it went), so both are computed again from the start."""
        path = self.store.ref_logps(t)
        try:
            saved = read_json(path)
            missing = {"prompt_ids", "chosen", "rejected", "from_sampler", "from_training"} - set(saved)
            if missing:
                raise KeyError(min(missing))
            if not len(saved["prompt_ids"]) == len(saved["chosen"]) == len(saved["rejected"]):
                raise ValueError("its lists differ in length")
            return saved
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            self.store.discard(path, damage(err), "computing the reference log-probs again")
            if self.store.train_state(t).is_file():
                self.store.discard(self.store.train_state(t), "its reference log-probs were damaged",
                                   f"training iteration {t} from its start")
            return None

    def deferred(self, t: int, n_pairs: int, model) -> set[int]:
        """Pairs whose reference log-probs training's own forward gives: those it meets on its starting weights
        (`reference_from_training`), where those weights are the reference (pi_t, and a single process) and a
        training-mode forward equals an evaluation one (no dropout)."""
        if not self.choice.is_current(t) or self.dist.active or has_dropout(model):
            return set()
        return reference_from_training(n_pairs, self.train, self.seed + t)

    def sampled(self, t: int, pairs: list[Pair]) -> list[tuple[float, float] | None]:
        """Per pair, the sampler's own (chosen, rejected) log-probs where they are this iteration's reference.

        They are log pi_t of responses sampled from pi_t at this iteration, so they are the reference when
        generation.sampler_logprobs is on and pi_t is the reference. Responses kept from earlier iterations were
        sampled from an older policy and get a forward pass under pi_t.
        """
        usable = self.sampler_logprobs and self.choice.is_current(t)
        out: list[tuple[float, float] | None] = []
        for p in pairs:
            c, r = p.chosen.logp, p.rejected.logp
            out.append((c, r) if usable and p.fresh(t) and c is not None and r is not None else None)
        return out

    def _writer(self, t: int, pairs: list[Pair]) -> Callable[[References], None]:
        return lambda ref: self._write(t, pairs, ref)

    def _write(self, t: int, pairs: list[Pair], ref: References, **counts: int) -> None:
        """iter_t/ref_logps.json: the pairs' reference log-probs, null where training has yet to fill them in."""
        def floats(values) -> list[float | None]:
            return [None if math.isnan(x) else x for x in values.tolist()]

        saved = read_json(self.store.ref_logps(t)) if not counts else counts
        counts = {k: saved[k] for k in ("from_sampler", "from_training")}
        self.store.write_json(self.store.ref_logps(t), {"prompt_ids": [p.prompt_id for p in pairs],
                                                        "chosen": floats(ref.chosen), "rejected": floats(ref.rejected),
                                                        **counts})
