"""Offline DPO on a fixed preference set (the paper's offline baseline), built from the online loop's parts.

The pairs are read once (optune.preferences), their answers tokenised once, and their rewards taken from
the data or scored once by the run's reward backend (wDPO needs them; DPO ignores them). Then one iteration
of the same loop runs with these pairs in place of sampled ones: the same training step, the starting
policy as the reference, the same run directory, metrics, checkpoints, held-out curve and resume.
"""

from __future__ import annotations

import random

from optune.preferences import PreferenceData
from optune.rewards import checked_score


def prompt_records(data: PreferenceData, limit: int | None, seed: int = 0) -> list[dict]:
    """One prompt record per pair; the pair itself rides along for `scored_pairs`.

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


def scored_pairs(ctx, t: int) -> list[dict]:
    """The fixed pairs as the loop's fresh rows: [chosen, rejected] with rewards (data's, else scored once)."""
    from optune.loop import Timer, _bar

    missing = [r for r in ctx.prompts if "chosen_reward" not in r["pair"]]

    def score(batch: list[dict]) -> list[dict]:
        texts = [text for r in batch for text in (r["pair"]["chosen"], r["pair"]["rejected"])]
        scores = checked_score(ctx.reward, [r for r in batch for _ in (0, 1)], texts)
        return [{"prompt_id": r["id"], "rewards": scores[2 * k:2 * k + 2]} for k, r in enumerate(batch)]

    with Timer(ctx.times, "rewarding"), _bar(f"iter {t} score pairs", len(missing)) as bar:
        scored = ctx.store.batched(ctx.store.iter_dir(t) / "score", missing,
                                   max(1, ctx.cfg.reward.batch_size // 2), score, bar)
    rewards = {row["prompt_id"]: row["rewards"] for row in scored}
    rows = []
    for record in ctx.prompts:
        pair = record["pair"]
        pair_rewards = rewards.get(record["id"], [pair.get("chosen_reward"), pair.get("rejected_reward")])
        samples = []
        for text, reward in zip((pair["chosen"], pair["rejected"]), pair_rewards):
            ids, eos = response_ids(ctx.tokenizer, text, ctx.cfg.generation.max_new_tokens)
            samples.append({"text": text, "ids": ids, "eos": eos, "reward": reward, "generated_at": -1})
        rows.append({"prompt_id": record["id"], "samples": samples})
    return rows
