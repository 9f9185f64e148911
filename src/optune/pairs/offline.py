"""Offline DPO on a fixed preference set (the paper's offline baseline), built from the online loop's parts.

The pairs are read once (optune.data.preferences), their answers tokenised once, and their rewards taken from
the data or scored once by the run's reward backend (wDPO needs them; DPO ignores them). Then one iteration
of the same loop runs with these pairs in place of sampled ones: the same training step, the starting
policy as the reference, the same run directory, metrics, checkpoints, held-out curve and resume.
"""

from __future__ import annotations

import random

from optune.clock import Clock
from optune.data.preferences import PreferenceData, PreferencePair
from optune.pairs import Response, State, merge, parts_at, parts_field
from optune.prompt import Prompt
from optune.reward.backends import scored_parts
from optune.runner.context import Context


def sample_pairs(data: PreferenceData, limit: int | None, seed: int = 0) -> dict[str, PreferencePair]:
    """The pairs a run trains on, by prompt id ("pair-000017": its index in the data), in file order.

    With a limit, a seeded uniform sample of the pairs: preference files are often grouped by source, so
    their first N pairs would not be representative.
    """
    keep = range(len(data.pairs))
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


class OfflineSource:
    """The fixed pairs of `sample_pairs` as their prompts' responses (the first is the chosen one).

    Rewards come from the data, else they are scored once by the run's reward backend (wDPO needs them;
    DPO ignores them).
    """

    labelled = True
    generates = False

    def __init__(self, pairs: dict[str, PreferencePair]):
        self.pairs = pairs

    def responses(self, ctx: Context, t: int, state: State, model, clock: Clock) -> tuple[State, int]:
        missing = [p for p in ctx.prompts if "chosen_reward" not in self.pairs[p.id]]

        def score(batch: list[Prompt]) -> list[dict]:
            texts = [text for p in batch for text in (self.pairs[p.id]["chosen"], self.pairs[p.id]["rejected"])]
            scores, parts = scored_parts(ctx.reward, [p for p in batch for _ in (0, 1)], texts)
            return [{"prompt_id": p.id, "rewards": scores[2 * k:2 * k + 2], **parts_field(parts, 2 * k, 2 * k + 2)}
                    for k, p in enumerate(batch)]

        with clock.phase("rewarding"), ctx.progress(f"iter {t} score pairs", len(missing)) as bar:
            scored = ctx.store.batched(ctx.store.score_dir(t), missing, max(1, ctx.cfg.reward.batch_size // 2),
                                       score, bar)
        rewards = {row["prompt_id"]: row["rewards"] for row in scored}
        parts = {row["prompt_id"]: row.get("parts") for row in scored}
        fresh = {}
        for p in ctx.prompts:
            pair = self.pairs[p.id]
            pair_rewards = rewards.get(p.id, [pair.get("chosen_reward"), pair.get("rejected_reward")])
            fresh[p.id] = [Response(text, *response_ids(ctx.tokenizer, text, ctx.cfg.generation.max_new_tokens),
                                    reward=reward, generated_at=-1, parts=parts_at(parts.get(p.id), j))
                           for j, (text, reward) in enumerate(zip((pair["chosen"], pair["rejected"]), pair_rewards))]
        return merge(state, fresh), 0
