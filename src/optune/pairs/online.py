"""The online pair source (OPTune's steps 2-3): select prompts, sample two responses each, score them.

Every step is written to the run directory before the next starts (selection.json, gen/ and score/
batches), so a resumed run picks the same prompts and redoes no finished batch.
"""

from __future__ import annotations

from optune.clock import Clock
from optune.distributed import batched
from optune.pairs import Response, State, chosen_reward, merge, parts_at, parts_field
from optune.reward.backends import scored_parts
from optune.runner.context import Context
from optune.selection import select_prompts
from optune.store import damage, read_json


def select(ctx: Context, t: int, state: State) -> list[int]:
    """Indices (into ctx.prompts) of the prompts to (re)generate at iteration t, stored so a resumed run picks
    the same ones: every prompt of iteration 0, and after it every prompt without stored responses (new with
    data.prompts_per_iteration) plus the selection rule's pick among those with them."""
    path = ctx.store.selection(t)
    index = {p.id: i for i, p in enumerate(ctx.prompts)}
    try:
        return sorted(index[i] for i in read_json(path)["prompt_ids"])
    except FileNotFoundError:
        pass
    except (OSError, ValueError, KeyError, TypeError) as err:  # the pick is seeded: made again, it is the same
        ctx.store.discard(path, damage(err), "picking the prompts again")
    prompts = ctx.iteration_prompts(t)  # iteration 0 starts from an empty state: every prompt is new
    seen = [p for p in prompts if p.id in state]
    picked = [index[p.id] for p in prompts if p.id not in state]
    if seen:
        sel = ctx.cfg.selection
        rewards = [chosen_reward(state[p.id]) for p in seen]
        chosen = select_prompts(rewards, sel.rho, sel.strategy, seed=ctx.cfg.seed * 7919 + t).tolist()
        picked = sorted(picked + [index[seen[k].id] for k in chosen])
    ctx.store.write_json(path, {"iteration": t, "prompt_ids": [ctx.prompts[i].id for i in picked]})
    return picked


def sample_row(sample) -> dict:
    """A Sample as stored in gen/batch files; `logp` only where the backend gave one."""
    return {k: v for k, v in vars(sample).items() if not (k == "logp" and v is None)}


def generate_and_score(ctx: Context, t: int, picked: list[int], model, clock: Clock) -> State:
    """Two fresh scored responses from pi_t (`model`) for each picked prompt; one atomic file per batch."""
    cfg = ctx.cfg

    def generate(indices: list[int]) -> list[dict]:
        seed = cfg.seed * 1_000_003 + t * 10_007 + indices[0]
        out = ctx.generator.generate(model, [ctx.prompts[i].ids for i in indices], n=2, seed=seed,
                                     path=ctx.policy_path(t))
        return [{"prompt_id": ctx.prompts[i].id, "samples": [sample_row(s) for s in samples]}
                for i, samples in zip(indices, out)]

    with clock.phase("generation"), ctx.progress(f"iter {t} generate", len(picked)) as bar:
        rows = batched(ctx.dist, ctx.store, ctx.store.gen_dir(t), picked, max(1, cfg.generation.batch_size // 2),
                       generate, bar)
    by_id = {p.id: p for p in ctx.prompts}

    def score(batch: list[dict]) -> list[dict]:
        prompts = [by_id[r["prompt_id"]] for r in batch for _ in r["samples"]]
        texts = [s["text"] for r in batch for s in r["samples"]]
        scores, parts = scored_parts(ctx.reward, prompts, texts, [s["eos"] for r in batch for s in r["samples"]],
                                     cfg.reward.missing_eos_penalty)
        return [{"prompt_id": r["prompt_id"], "rewards": scores[2 * k:2 * k + 2],
                 **parts_field(parts, 2 * k, 2 * k + 2)} for k, r in enumerate(batch)]

    with clock.phase("rewarding"), ctx.progress(f"iter {t} score", len(rows)) as bar:
        scores = batched(ctx.dist, ctx.store, ctx.store.score_dir(t), rows, max(1, cfg.reward.batch_size // 2),
                         score, bar)
    return {row["prompt_id"]: [Response(**s, reward=reward, generated_at=t, parts=parts_at(sc.get("parts"), j))
                               for j, (s, reward) in enumerate(zip(row["samples"], sc["rewards"]))]
            for row, sc in zip(rows, scores)}


class OnlineSource:
    """Regenerate the selected prompts with the current policy; every other prompt keeps its responses."""

    labelled = False
    generates = True

    def responses(self, ctx: Context, t: int, state: State, model, clock: Clock) -> tuple[State, int]:
        with clock.phase("bookkeeping"):
            picked = select(ctx, t, state)
        return merge(state, generate_and_score(ctx, t, picked, model, clock)), len(picked)
