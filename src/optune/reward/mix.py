"""`reward.backend=mix`: a weighted sum of named reward components.

total = sum_i weight_i * s_i, where s_i is component i's score, or with its `standardize` set, that score's
z-score over the scored batch: (s - mean) / std (the population std; a batch whose scores are all equal
gives 0s). Each component is built from the same `BACKENDS` registry as a run's single reward, so a
component scores exactly as its backend would alone.

Standardising makes a response's total depend on the other responses in its batch. The online loop scores
in fixed batches (reward.batch_size responses, each batch written to score/ when it finishes), so a resumed
run meets the same batches and gets the same totals; another reward.batch_size gives other totals, and a
run's last batch may be smaller. `score_parts` returns the components' raw scores (neither standardised nor
weighted) beside the totals: they compare across batches and iterations, and runs store them per response.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from optune.choices import RewardBackendName
from optune.config.schema import is_callable_label, label_name
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.config import RewardComponent, RewardConfig


class MixReward:
    """The components of reward.components, each scoring every response; the total is their weighted sum."""

    def __init__(self, cfg: RewardConfig, make: Callable, check: Callable):
        """`make(component settings) -> backend` and `check(scores, n, who) -> floats` are optune.reward.backends'
        registry and score check, handed in so that this module needs nothing from the one that registers it."""
        self.check = check
        self.components = [(comp, _build(comp, i, make)) for i, comp in enumerate(cfg.components)]

    def score(self, prompts: list[Prompt], responses: list[str]) -> list[float]:
        return self.score_parts(prompts, responses)[0]

    def score_parts(self, prompts: list[Prompt],
                    responses: list[str]) -> tuple[list[float], dict[str, list[float]]]:
        """(totals, {component name: its raw scores}); every component's scores checked finite, naming it."""
        totals = [0.0] * len(responses)
        parts: dict[str, list[float]] = {}
        for comp, backend in self.components:
            raw = self.check(backend.score(prompts, responses), len(responses),
                             who=f"reward component {comp.name!r} ({comp.backend})")
            parts[comp.name] = raw
            used = standardized(raw) if comp.standardize else raw
            totals = [total + comp.weight * s for total, s in zip(totals, used)]
        return totals, parts


def standardized(scores: list[float]) -> list[float]:
    """(s - mean) / std over `scores` (population std); all 0 when the scores are all equal, where rounding
    would otherwise make a std of 1e-17 out of nothing."""
    if not scores or min(scores) == max(scores):
        return [0.0] * len(scores)
    mean = math.fsum(scores) / len(scores)
    std = math.sqrt(math.fsum((s - mean) ** 2 for s in scores) / len(scores))
    return [(s - mean) / std for s in scores]


def _build(comp: RewardComponent, i: int, make: Callable):
    """Component i's backend; a Python function that config.yaml recorded only by name is one clear error."""
    if comp.backend == RewardBackendName.CALLABLE and is_callable_label(comp.function):
        raise UserError(f"reward.components[{i}] ({comp.name}): its function was the Python function "
                        f"{label_name(str(comp.function))}, which config.yaml cannot hold; give a mix's functions as "
                        "module:function or file.py:function to resume it")
    backend = make(comp)
    if hasattr(backend, "who"):  # a backend that checks its own scores (callable): its errors name the component
        backend.who = f"reward component {comp.name!r} ({comp.backend})"
    return backend
