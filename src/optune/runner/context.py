"""The `Context` the loop reads: what stays fixed from the first iteration to the last.

Built once by optune.runner.prepare, with the stages already built (the pair source, the trainer) from what
each uses. It holds no per-iteration state: the policy being trained and the iteration's clock are passed to
each stage, and a stage returns what it changes (the new policy, the new responses), so the loop shows every
hand-over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from optune.clock import progress
from optune.config.run import RunConfig
from optune.distributed import Dist
from optune.generation.base import Generator
from optune.losses import PreferenceLoss
from optune.pairs.source import PairSource, PromptPool
from optune.prompt import Prompt
from optune.reward.backends import RewardBackend
from optune.runner.tracking import Tracker
from optune.store import RunStore
from optune.training.iteration import Trainer

if TYPE_CHECKING:  # transformers is heavy; only its types are named here
    from transformers import PreTrainedTokenizerBase


@dataclass(frozen=True)
class Context:
    """Everything an iteration reads; built once by `optune.runner.prepare.prepare`."""

    cfg: RunConfig
    store: RunStore
    tokenizer: PreTrainedTokenizerBase
    generator: Generator
    reward: RewardBackend
    pool: PromptPool
    """The training prompts, tokenised, and which of them each iteration uses."""
    heldout: list[Prompt]
    initial_model_path: str
    """The checkpoint of pi_0 (also the reference where loss.reference is "initial")."""
    source: PairSource
    """Where each iteration's responses come from: online sampling or a fixed preference set."""
    loss: PreferenceLoss
    """The run's loss, built once: its pair weights are recorded with the pairs, and the trainer minimises it."""
    trainer: Trainer
    tracker: Tracker | None = None
    dist: Dist = field(default_factory=Dist)
    """Processes under `accelerate launch` (inactive in a plain run); see optune.distributed."""

    def progress(self, desc: str, total: int):
        """A progress bar shown by the main process only."""
        return progress(desc, total, self.dist.is_main)

    def policy_path(self, t: int, trained: bool = False) -> str:
        """The checkpoint on disk that holds the in-memory policy: pi_t at iteration t, or pi_{t+1} once trained."""
        return self.store.policy_path(t, self.initial_model_path, trained)
