"""Offline DPO on a fixed preference set (the paper's offline baseline), built from the online loop's parts.

The pairs are read once (optune.data.preferences), their answers tokenised once, and their rewards taken from
the data or scored once by the run's reward backend (wDPO needs them; DPO ignores them). Then one iteration
of the same loop runs with these pairs in place of sampled ones: the same training step, the starting
policy as the reference, the same run directory, metrics, checkpoints, held-out curve and resume.
"""

from __future__ import annotations

import random

from optune.context import Context, Timer, progress
from optune.data.preferences import PreferenceData
from optune.pairs import Response, State, merge
from optune.reward.backends import checked_score


def prompt_records(data: PreferenceData, limit: int | None, seed: int = 0) -> list[dict]:
    """One prompt record per pair; the pair itself rides along for `OfflineSource`.

    With a limit, a seeded uniform sample of the pairs (in file order): preference files are often
    grouped by source, so their first N pairs would not be representative.
    """
    keep = range(len(data.pairs))
    if limit and limit < len(data.pairs):
        keep = sorted(random.Random(seed).sample(keep, limit))
    return [{"id": f"pair-{i:06d}", "prompt": data.pairs[i]["prompt"], "history": data.pairs[i]["history"],
             "pair": data.pairs[i]} for i in keep]


def response_ids(tokenizer, text: str, max_tokens: int) -> tuple[list[int], bool]:
    """Token ids of an answer as the policy would have produced it: EOS appended unless cut at max_tokens."""
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) >= max_tokens:
        return ids[:max_tokens], False
    return ids + [tokenizer.eos_token_id], True


class OfflineSource:
    """The fixed pairs of `prompt_records` as every prompt's responses (the first is the chosen one).

    Rewards come from the data, else they are scored once by the run's reward backend (wDPO needs them;
    DPO ignores them).
    """

    labelled = True

    def responses(self, ctx: Context, t: int, state: State) -> tuple[State, int]:
        missing = [r for r in ctx.prompts if "chosen_reward" not in r["pair"]]

        def score(batch: list[dict]) -> list[dict]:
            texts = [text for r in batch for text in (r["pair"]["chosen"], r["pair"]["rejected"])]
            scores = checked_score(ctx.reward, [r for r in batch for _ in (0, 1)], texts)
            return [{"prompt_id": r["id"], "rewards": scores[2 * k:2 * k + 2]} for k, r in enumerate(batch)]

        with Timer(ctx.times, "rewarding"), progress(ctx, f"iter {t} score pairs", len(missing)) as bar:
            scored = ctx.store.batched(ctx.store.score_dir(t), missing, max(1, ctx.cfg.reward.batch_size // 2),
                                       score, bar)
        rewards = {row["prompt_id"]: row["rewards"] for row in scored}
        fresh = {}
        for record in ctx.prompts:
            pair = record["pair"]
            pair_rewards = rewards.get(record["id"], [pair.get("chosen_reward"), pair.get("rejected_reward")])
            fresh[record["id"]] = [Response(text, *response_ids(ctx.tokenizer, text, ctx.cfg.generation.max_new_tokens),
                                            reward=reward, generated_at=-1)
                                   for text, reward in zip((pair["chosen"], pair["rejected"]), pair_rewards)]
        return merge(state, fresh), 0
