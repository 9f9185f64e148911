"""Study design: which prompts, which pairs, which rater sees which pair in which order.

Everything here is a pure function of its inputs and a seed, so a study can be rebuilt and
checked. The paper's study (Appendix D): 50 LIMA-test prompts, two comparisons (100 pairs),
8 raters, each pair rated by 4 people, 50 pairs per rater; `assign` reproduces that shape.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from optune.errors import UserError


@dataclass(frozen=True)
class Assignment:
    """Rater `rater` sees item `item` as their `position`-th pair; `first_is_a` says whether
    the comparison's first system is shown as response A (the order is hidden from the rater)."""

    item: int
    rater: int
    position: int
    first_is_a: bool


def draw_prompts(prompts: list[str], n: int, seed: int) -> list[str]:
    """Draw `n` distinct prompts at random (seeded), keeping the pool's order among them."""
    if n < 1:
        raise UserError(f"--n-prompts must be at least 1, got {n}")
    if n > len(prompts):
        raise UserError(
            f"--n-prompts {n} is more than the {len(prompts)} prompts all compared systems answered"
        )
    chosen = set(random.Random(seed).sample(range(len(prompts)), n))
    return [p for i, p in enumerate(prompts) if i in chosen]


def make_items(n_comparisons: int, n_prompts: int) -> list[tuple[int, int]]:
    """One item per (comparison, prompt): every comparison is judged on the same prompts."""
    return [(c, p) for c in range(n_comparisons) for p in range(n_prompts)]


def assign(n_items: int, n_raters: int, per_item: int, seed: int) -> list[Assignment]:
    """Give every item to `per_item` different raters with loads as equal as possible.

    Items are visited in random order and each goes to the least-loaded raters (random among
    equals), which keeps loads within one of each other and mixes who rates with whom, so
    agreement is measured across many rater pairs rather than a few fixed groups. Within an
    item the A/B order alternates across its raters (from a random start) so position bias
    cancels out per item. Each rater's pairs are then shuffled into their own order.
    """
    if n_raters < 1:
        raise UserError(f"need at least one rater, got {n_raters}")
    if not 1 <= per_item <= n_raters:
        raise UserError(f"--ratings-per-item must be between 1 and the number of raters ({n_raters}), got {per_item}")
    rng = random.Random(seed)
    load = [0] * n_raters
    per_rater: list[list[tuple[int, bool]]] = [[] for _ in range(n_raters)]
    order = list(range(n_items))
    rng.shuffle(order)
    for item in order:
        ties = rng.sample(range(n_raters), n_raters)
        raters = sorted(ties, key=lambda r: load[r])[:per_item]
        start = rng.random() < 0.5
        for j, rater in enumerate(raters):
            load[rater] += 1
            per_rater[rater].append((item, start ^ (j % 2 == 1)))
    assignments = []
    for rater, items in enumerate(per_rater):
        rng.shuffle(items)
        for position, (item, first_is_a) in enumerate(items):
            assignments.append(Assignment(item, rater, position, first_is_a))
    return assignments


def parse_comparisons(specs: list[str] | None, systems: list[str]) -> list[tuple[str, str]]:
    """Turn `--compare FIRST:SECOND` options into name pairs; default: the first two systems.

    The first system of a pair is the one whose win / loss / tie is reported (the paper's
    "OPTune" column), so results read "FIRST vs SECOND".
    """
    if not specs:
        if len(systems) != 2:
            raise UserError(f"with {len(systems)} systems, say what to compare with --compare FIRST:SECOND")
        return [(systems[0], systems[1])]
    pairs = []
    for spec in specs:
        first, sep, second = spec.partition(":")
        if not sep:
            raise UserError(f"--compare {spec!r}: expected FIRST:SECOND")
        for name in (first, second):
            if name not in systems:
                raise UserError(f"--compare {spec!r}: unknown system {name!r} (known: {', '.join(systems)})")
        if first == second:
            raise UserError(f"--compare {spec!r}: a system cannot be compared with itself")
        if (first, second) in pairs or (second, first) in pairs:
            raise UserError(f"--compare {spec!r}: this comparison is given twice")
        pairs.append((first, second))
    return pairs
