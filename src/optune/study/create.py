"""Build a study file from systems' stored responses: the library side of `optune study create`.

Generation is not done here: the evaluation side exports each checkpoint's outputs in the
AlpacaEval or JSONL format that `sources.read_system` reads, and the study only compares them.
"""

from __future__ import annotations

import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from optune.errors import UserError
from optune.study import design, sources, storage


@dataclass
class CreatedStudy:
    """What the organiser needs once: a one-line summary and each rater's secret token."""

    summary: str
    tokens: list[tuple[str, str]]  # (rater name, token)


def load_systems(specs: list[str]) -> list[sources.SystemOutputs]:
    """Read every `--system [NAME=]PATH`, requiring at least two systems with distinct names."""
    systems = [sources.read_system(path, name) for name, path in map(sources.parse_system_arg, specs)]
    names = [s.name for s in systems]
    if len(systems) < 2:
        raise UserError("give at least two --system files")
    if len(set(names)) != len(names):
        raise UserError(f"system names must be distinct, got {', '.join(names)} (use --system NAME=PATH)")
    for s in systems:
        if s.duplicates:
            print(f"note: {s.source}: {s.duplicates} repeated prompts, first response kept", file=sys.stderr)
    return systems


def create_study(
    out: str | Path,
    system_specs: list[str],
    compare: list[str] | None,
    *,
    n_prompts: int,
    raters: list[str],
    ratings_per_item: int,
    seed: int,
    force: bool = False,
) -> CreatedStudy:
    """Check everything, draw prompts, assign pairs, and write the study file atomically.

    Refuses to overwrite an existing file unless `force`: it may already hold ratings.
    """
    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out} is a folder; a study file is a file, e.g. {out / 'study.db'}")
    if out.exists() and not force:
        raise UserError(f"{out} exists (it may hold ratings); pass --force to replace it")
    if not out.parent.is_dir():
        raise UserError(f"{out.parent}: no such folder")
    if len(set(raters)) != len(raters) or not raters:
        raise UserError("rater names must be distinct and at least one")
    if not 1 <= ratings_per_item <= len(raters):
        raise UserError(f"--ratings-per-item must be between 1 and the number of raters ({len(raters)}), "
                        f"got {ratings_per_item}")
    if n_prompts < 1:
        raise UserError(f"--n-prompts must be at least 1, got {n_prompts}")
    systems = load_systems(system_specs)
    names = [s.name for s in systems]
    pairs = design.parse_comparisons(compare, names)
    unused = set(names) - {n for pair in pairs for n in pair}
    if unused:
        raise UserError(f"system(s) {', '.join(sorted(unused))} are in no --compare")
    pool = sources.common_prompts(systems)
    prompts = design.draw_prompts(pool, n_prompts, seed)
    items = design.make_items(len(pairs), len(prompts))
    assignments = design.assign(len(items), len(raters), ratings_per_item, seed)
    tokens = [secrets.token_urlsafe(18) for _ in raters]
    index = {n: i for i, n in enumerate(names)}
    storage.write_study(out, storage.StudyPlan(
        systems=[(s.name, s.source) for s in systems],
        comparisons=[(index[a], index[b]) for a, b in pairs],
        prompts=prompts,
        responses={(si, pi): s.responses[p] for si, s in enumerate(systems) for pi, p in enumerate(prompts)},
        items=items,
        raters=[(n, storage.token_hash(t)) for n, t in zip(raters, tokens)],
        assignments=assignments,
        meta={"seed": str(seed), "ratings_per_item": str(ratings_per_item), "prompt_pool": str(len(pool))},
    ))
    loads = [sum(1 for a in assignments if a.rater == r) for r in range(len(raters))]
    summary = (
        f"{out}: {len(pairs)} comparison(s) x {len(prompts)} prompts (drawn from {len(pool)} answered by all) "
        f"= {len(items)} pairs; {len(raters)} raters, {ratings_per_item} per pair, {min(loads)}-{max(loads)} pairs each"
    )
    return CreatedStudy(summary=summary, tokens=list(zip(raters, tokens)))
