"""The `Context` every stage of a run reads: what stays fixed from the first iteration to the last.

Built once by optune.runner.prepare. It holds no per-iteration state: the policy being trained and the
iteration's clock are passed to each stage, and a stage returns what it changes (the new policy, the new
responses), so the loop shows every hand-over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from optune.clock import Clock, progress
from optune.config.run import RunConfig
from optune.distributed import Dist
from optune.generation.base import Generator
from optune.pairs import State
from optune.prompt import Prompt
from optune.reward.backends import RewardBackend
from optune.runner.tracking import Tracker
from optune.selection import iteration_pool
from optune.store import RunStore

if TYPE_CHECKING:  # transformers is heavy; only its types are named here
    from transformers import PreTrainedTokenizerBase


class PairSource(Protocol):
    """Where each iteration's responses come from: optune.pairs.online (sample and score) or
    optune.pairs.offline (a fixed preference set). The loop calls a source without knowing which."""

    labelled: bool
    """True when the first response is the chosen one whatever the rewards say (human labels)."""
    generates: bool
    """True when the source samples responses from the policy (the log then reports what it regenerated)."""

    def responses(self, ctx: Context, t: int, state: State, model, clock: Clock) -> tuple[State, int]:
        """Every prompt's two scored responses for iteration t (sampled from pi_t, `model`, where a source
        samples), and how many prompts got fresh ones; each phase timed on `clock`."""
        ...


@dataclass(frozen=True)
class Context:
    """Everything an iteration reads; built once by `optune.runner.prepare.prepare`."""

    cfg: RunConfig
    store: RunStore
    tokenizer: PreTrainedTokenizerBase
    generator: Generator
    reward: RewardBackend
    prompts: list[Prompt]
    """The training prompts, tokenised (`Prompt.ids` set)."""
    heldout: list[Prompt]
    initial_model_path: str
    """The checkpoint of pi_0 (also the reference where loss.reference is "initial")."""
    source: PairSource
    """Where each iteration's responses come from: online sampling or a fixed preference set."""
    tracker: Tracker | None = None
    dist: Dist = field(default_factory=Dist)
    """Processes under `accelerate launch` (inactive in a plain run); see optune.distributed."""

    def progress(self, desc: str, total: int):
        """A progress bar shown by the main process only."""
        return progress(desc, total, self.dist.is_main)

    def iteration_prompts(self, t: int) -> list[Prompt]:
        """The prompts iteration t uses: every training prompt, or data.prompts_per_iteration of them."""
        picked = iteration_pool(len(self.prompts), self.cfg.data.prompts_per_iteration, t, self.cfg.seed)
        return [self.prompts[i] for i in picked]

    def policy_path(self, t: int, trained: bool = False) -> str:
        """The checkpoint on disk that holds the in-memory policy: pi_t at iteration t, or pi_{t+1} once trained.

        Backends that load weights themselves (vllm) sample from it; the loop writes pi_{t+1} before using it.
        """
        if trained:
            return str(self.store.checkpoint(t))
        return str(self.store.checkpoint(t - 1)) if t > 0 else self.initial_model_path
