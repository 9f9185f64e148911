"""Where an iteration's preference pairs come from, as typed records.

A prompt's current two scored responses are `Response`s; `merge` replaces the regenerated prompts'
responses and keeps everyone else's; `build_pairs` turns them into `Pair`s (chosen = higher reward, ties
dropped and counted). A pair source (`source.PairSource`) gives each iteration's responses:
`online.OnlineSource` (select, generate, score: OPTune's step 2-3) or `offline.OfflineSource` (a fixed
preference set, `optune dpo`). The loop calls a source without knowing which one it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from optune.prompt import Prompt

State = dict[str, list["Response"]]
"""prompt id -> its current two responses."""


@dataclass
class Response:
    text: str
    """Decoded response without special tokens."""
    ids: list[int]
    """Response token ids, ending with EOS when `eos` is true (trained on exactly these)."""
    eos: bool
    """Whether the response ended with EOS (False: cut at max_new_tokens)."""
    reward: float
    generated_at: int
    """The iteration whose policy sampled it; -1 for fixed (offline) data."""
    logp: float | None = None
    """The sampler's own log-prob of `ids` (temperature 1, no top-p), where the backend gave one."""
    parts: dict[str, float] | None = None
    """Each reward component's raw score by name, where the reward has components (reward.backend mix)."""

    def to_row(self) -> dict:
        """As stored in responses.jsonl; `logp` and `parts` only where there are some."""
        row = {"text": self.text, "ids": self.ids, "eos": self.eos}
        if self.logp is not None:
            row["logp"] = self.logp
        row = {**row, "reward": self.reward, "generated_at": self.generated_at}
        if self.parts is not None:
            row["parts"] = dict(self.parts)
        return row

    @classmethod
    def from_row(cls, row: dict) -> Response:
        return cls(text=row["text"], ids=row["ids"], eos=row["eos"], reward=row["reward"],
                   generated_at=row["generated_at"], logp=row.get("logp"), parts=row.get("parts"))


@dataclass
class Pair:
    """One training pair: a prompt's token ids and its chosen and rejected responses."""

    prompt_id: str
    prompt_ids: list[int]
    chosen: Response
    rejected: Response

    @classmethod
    def of(cls, prompt_ids: list[int], chosen_ids: list[int], rejected_ids: list[int], chosen_reward: float = 1.0,
           rejected_reward: float = 0.0, prompt_id: str = "") -> Pair:
        """A pair from token ids alone (tests, benchmarks): no text, both responses ending without EOS."""
        return cls(prompt_id, prompt_ids, Response("", chosen_ids, False, chosen_reward, 0),
                   Response("", rejected_ids, False, rejected_reward, 0))

    def fresh(self, t: int) -> bool:
        """Both responses were sampled at iteration t (by pi_t)."""
        return self.chosen.generated_at == self.rejected.generated_at == t


Parts = dict[str, list[float]]
"""A scored batch's component scores: component name -> one score per response (optune.reward.mix)."""


def parts_at(parts: Parts | None, k: int) -> dict[str, float] | None:
    """Response k's component scores out of a scored batch's (None where the reward has no components)."""
    return None if parts is None else {name: scores[k] for name, scores in parts.items()}


def parts_field(parts: Parts | None, start: int, stop: int) -> dict:
    """{"parts": {name: scores[start:stop]}} to add to a stored score row, or {} (the row as without parts)."""
    return {} if parts is None else {"parts": {name: scores[start:stop] for name, scores in parts.items()}}


def state_rows(prompts: list[Prompt], state: State) -> list[dict]:
    """responses.jsonl rows, in prompt order."""
    return [{"prompt_id": p.id, "responses": [r.to_row() for r in state[p.id]]} for p in prompts]


def state_from_rows(rows: list[dict]) -> State:
    return {row["prompt_id"]: [Response.from_row(r) for r in row["responses"]] for row in rows}


def merge(state: State, fresh: State) -> State:
    """The regenerated prompts' new responses; every other prompt keeps its stored ones."""
    return {**state, **fresh}


def chosen_reward(responses: list[Response]) -> float:
    return max(r.reward for r in responses)


def order(a: Response, b: Response, labelled: bool) -> tuple[Response, Response]:
    """(chosen, rejected): the higher reward first (the first on equal rewards), or as labelled."""
    return (a, b) if labelled or a.reward >= b.reward else (b, a)


def build_pairs(prompts: list[Prompt], state: State, weights, labelled: bool = False,
                drop_ties: bool = True) -> tuple[list[Pair], list[dict], int]:
    """(pairs to train on, one pairs.jsonl row per prompt, number of ties).

    Equal rewards carry no preference: such pairs are ties, dropped when `drop_ties`. With `labelled`
    (offline data) the first response is the chosen one and equal rewards are no reason to drop a human
    label. `weights(chosen [B], rejected [B]) -> [B]` is the loss's pair weight, recorded per row.
    """
    pairs, rows, ties = [], [], 0
    for p in prompts:
        a, b = state[p.id]
        chosen, rejected = order(a, b, labelled)
        tie = a.reward == b.reward and not labelled
        trained = not (tie and drop_ties)
        ties += tie
        rows.append({"prompt_id": p.id, "chosen_reward": chosen.reward, "rejected_reward": rejected.reward,
                     "chosen_generated_at": chosen.generated_at, "tie": tie, "trained": trained})
        if trained:
            # a prompt not encoded (optune export pairs texts) has no token ids to train on
            pairs.append(Pair(p.id, p.ids or [], chosen, rejected))
    if rows:
        w = weights(torch.tensor([r["chosen_reward"] for r in rows], dtype=torch.float32),
                    torch.tensor([r["rejected_reward"] for r in rows], dtype=torch.float32))
        for row, weight in zip(rows, w.tolist()):
            row["weight"] = weight
    return pairs, rows, ties
