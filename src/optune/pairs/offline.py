"""Offline DPO on a fixed preference set (the paper's offline baseline), built from the online loop's parts.

The pairs are read once (optune.data.preferences), their answers tokenised once, and their rewards taken from
the data or scored once by the run's reward backend (wDPO needs them; DPO ignores them). Then one iteration
of the same loop runs with these pairs in place of sampled ones: the same training step, the starting
policy as the reference, the same run directory, metrics, checkpoints, held-out curve and resume.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from optune.clock import Clock, progress
from optune.data.preferences import PreferenceData, PreferencePair
from optune.distributed import Dist
from optune.pairs import Response, State, merge, parts_at
from optune.pairs.source import score_pairs
from optune.prompt import Prompt
from optune.reward.backends import RewardBackend
from optune.store import RunStore

if TYPE_CHECKING:  # transformers is heavy; only its types are named here
    from transformers import PreTrainedTokenizerBase


def sample_pairs(data: PreferenceData, limit: int | None, seed: int = 0) -> dict[str, PreferencePair]:
    """The pairs a run trains on, by prompt id ("pair-000017": its index in the data), in file order.

    With a limit, a seeded uniform sample of the pairs: preference files are often grouped by source, so
    their first N pairs would not be representative.
    """
    keep: Sequence[int] = range(len(data.pairs))
    if limit and limit < len(data.pairs):
        keep = sorted(random.Random(seed).sample(keep, limit))
    return {f"pair-{i:06d}": data.pairs[i] for i in keep}


def pair_prompts(pairs: dict[str, PreferencePair]) -> list[Prompt]:
    """One prompt per pair: its last user turn and the turns before it."""
    return [Prompt(id=pid, text=pair["prompt"], history=list(pair["history"])) for pid, pair in pairs.items()]


def response_ids(tokenizer, text: str, max_tokens: int) -> tuple[list[int], bool]:
    """Token ids of an answer as the policy would have produced it: EOS appended unless cut at max_tokens."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) >= max_tokens:
        return ids[:max_tokens], False
    return ids + [tokenizer.eos_token_id], True


@dataclass
class OfflineSource:
    """The fixed pairs of `sample_pairs` as their prompts' responses (the first is the chosen one).

    Rewards come from the data, else they are scored once by the run's reward backend (wDPO needs them;
    DPO ignores them).
    """

    pairs: dict[str, PreferencePair]
    store: RunStore
    reward: RewardBackend
    tokenizer: PreTrainedTokenizerBase
    prompts: list[Prompt]
    """The pairs' prompts (`pair_prompts`), tokenised."""
    max_new_tokens: int
    """An answer longer than this is cut, as the policy's would have been (no EOS)."""
    reward_batch: int
    """Pairs per score batch file (reward.batch_size responses)."""
    dist: Dist = field(default_factory=Dist)

    labelled = True
    generates = False

    def responses(self, t: int, state: State, model, clock: Clock) -> tuple[State, int]:
        missing = [p for p in self.prompts if "chosen_reward" not in self.pairs[p.id]]

        def score(batch: list[Prompt]) -> list[dict]:
            texts = [(self.pairs[p.id]["chosen"], self.pairs[p.id]["rejected"]) for p in batch]
            return score_pairs(self.reward, batch, texts)

        with clock.phase("rewarding"), progress(f"iter {t} score pairs", len(missing), self.dist.is_main) as bar:
            scored = self.store.batched(self.store.score_dir(t), missing, self.reward_batch, score, bar)
        rewards = {row["prompt_id"]: row["rewards"] for row in scored}
        parts = {row["prompt_id"]: row.get("parts") for row in scored}
        fresh = {}
        for p in self.prompts:
            pair = self.pairs[p.id]
            pair_rewards = rewards.get(p.id, [pair.get("chosen_reward"), pair.get("rejected_reward")])
            fresh[p.id] = [Response(text, *response_ids(self.tokenizer, text, self.max_new_tokens), reward=reward,
                                    generated_at=-1, parts=parts_at(parts.get(p.id), j))
                           for j, (text, reward) in enumerate(zip((pair["chosen"], pair["rejected"]), pair_rewards))]
        return merge(state, fresh), 0
