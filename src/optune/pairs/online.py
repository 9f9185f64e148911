"""The online pair source (OPTune's steps 2-3): select prompts, sample two responses each, score them.

Every step is written to the run directory before the next starts (selection.json, gen/ and score/
batches), so a resumed run picks the same prompts and redoes no finished batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optune.clock import Clock, progress
from optune.config.run import SelectionConfig
from optune.distributed import Dist, batched
from optune.generation.base import Generator
from optune.pairs import Response, State, chosen_reward, merge, parts_at
from optune.pairs.source import PromptPool, score_pairs
from optune.reward.backends import RewardBackend
from optune.selection import select_prompts
from optune.store import RunStore, damage, read_json


@dataclass
class OnlineSource:
    """Regenerate the selected prompts with the current policy; every other prompt keeps its responses."""

    store: RunStore
    generator: Generator
    reward: RewardBackend
    pool: PromptPool
    selection: SelectionConfig
    initial_model_path: str
    """pi_0's checkpoint: a backend that loads weights itself samples iteration 0 from it."""
    generation_batch: int
    """Prompts per generation batch file (generation.batch_size responses: two per prompt)."""
    reward_batch: int
    """Prompts per score batch file (reward.batch_size responses)."""
    missing_eos_penalty: float = 0.0
    seed: int = 0
    dist: Dist = field(default_factory=Dist)

    labelled = False
    generates = True

    def responses(self, t: int, state: State, model, clock: Clock) -> tuple[State, int]:
        with clock.phase("bookkeeping"):
            picked = self.select(t, state)
        return merge(state, self.generate_and_score(t, picked, model, clock)), len(picked)

    def select(self, t: int, state: State) -> list[int]:
        """Indices (into the pool's prompts) of the prompts to (re)generate at iteration t, stored so a resumed
        run picks the same ones: every prompt of iteration 0, and after it every prompt without stored responses
        (new with data.prompts_per_iteration) plus the selection rule's pick among those with them."""
        path, prompts = self.store.selection(t), self.pool.prompts
        index = {p.id: i for i, p in enumerate(prompts)}
        try:
            return sorted(index[i] for i in read_json(path)["prompt_ids"])
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as err:  # the pick is seeded: made again, it is the same
            self.store.discard(path, damage(err), "picking the prompts again")
        current = self.pool.at(t)  # iteration 0 starts from an empty state: every prompt is new
        seen = [p for p in current if p.id in state]
        picked = [index[p.id] for p in current if p.id not in state]
        if seen:
            rewards = [chosen_reward(state[p.id]) for p in seen]
            chosen = select_prompts(rewards, self.selection.rho, self.selection.strategy, seed=self.seed * 7919 + t)
            picked = sorted(picked + [index[seen[k].id] for k in chosen.tolist()])
        self.store.write_json(path, {"iteration": t, "prompt_ids": [prompts[i].id for i in picked]})
        return picked

    def generate_and_score(self, t: int, picked: list[int], model, clock: Clock) -> State:
        """Two fresh scored responses from pi_t (`model`) for each picked prompt; one atomic file per batch."""
        prompts = self.pool.prompts

        def generate(indices: list[int]) -> list[dict]:
            seed = self.seed * 1_000_003 + t * 10_007 + indices[0]
            out = self.generator.generate(model, [prompts[i].token_ids() for i in indices], n=2, seed=seed,
                                          path=self.store.policy_path(t, self.initial_model_path))
            return [{"prompt_id": prompts[i].id, "samples": [sample_row(s) for s in samples]}
                    for i, samples in zip(indices, out)]

        with clock.phase("generation"), progress(f"iter {t} generate", len(picked), self.dist.is_main) as bar:
            rows = batched(self.dist, self.store, self.store.gen_dir(t), picked, self.generation_batch, generate, bar)
        by_id = {p.id: p for p in prompts}

        def score(batch: list[dict]) -> list[dict]:
            texts = [(r["samples"][0]["text"], r["samples"][1]["text"]) for r in batch]
            eos = [(r["samples"][0]["eos"], r["samples"][1]["eos"]) for r in batch]
            return score_pairs(self.reward, [by_id[r["prompt_id"]] for r in batch], texts, eos,
                               self.missing_eos_penalty)

        with clock.phase("rewarding"), progress(f"iter {t} score", len(rows), self.dist.is_main) as bar:
            scores = batched(self.dist, self.store, self.store.score_dir(t), rows, self.reward_batch, score, bar)
        return {row["prompt_id"]: [Response(**s, reward=reward, generated_at=t, parts=parts_at(sc.get("parts"), j))
                                   for j, (s, reward) in enumerate(zip(row["samples"], sc["rewards"]))]
                for row, sc in zip(rows, scores)}


def sample_row(sample) -> dict:
    """A Sample as stored in gen/batch files; `logp` only where the backend gave one."""
    return {k: v for k, v in vars(sample).items() if not (k == "logp" and v is None)}
