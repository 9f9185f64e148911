"""The reward components' scores of one iteration, for the report (composite rewards, reward.backend mix).

Pure functions of stored rows, so the report reads them without loading a model or torch.
"""

from __future__ import annotations

import math


def component_means(responses_rows: list[dict], labelled: bool = False) -> dict[str, float]:
    """Mean raw score per reward component over the prompts' chosen responses, for one iteration's
    responses.jsonl rows ({"prompt_id", "responses": [two response rows]}); {} for a reward without components.

    The chosen response is the one optune.pairs.order picks (the higher reward, the first of two equal ones;
    the first when `labelled`, as for offline pairs), so these means split `objective/scores` (the mean
    chosen reward) into its components. A response without a component's score (a run resumed with another
    reward) is left out of that component's mean.
    """
    sums: dict[str, list[float]] = {}
    for row in responses_rows:
        responses = row["responses"]
        if not responses:
            continue
        first, *rest = responses
        chosen = first if labelled or not rest or first["reward"] >= rest[0]["reward"] else rest[0]
        for name, score in (chosen.get("parts") or {}).items():
            sums.setdefault(name, []).append(float(score))
    return {name: math.fsum(scores) / len(scores) for name, scores in sums.items()}
