"""lm-evaluation-harness on a checkpoint with the paper's Table 5 settings.

Why these settings: the paper reports TruthfulQA (mc2, 0-shot), GSM8k (5-shot), HellaSwag
(acc_norm, 0-shot) and MMLU (acc, 0-shot) to show that preference tuning does not cost general
ability (its Table 3). Each task keeps its own shot count, so tasks are run in groups by shot
count. Results land in the run directory (RUN_DIR/bench/iter_XXX.json) next to the checkpoint.
lm-eval is an optional dependency (`pip install optune[bench]`), imported only here.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from optune.errors import UserError
from optune.store import RunStore


@dataclass(frozen=True)
class BenchTask:
    task: str
    num_fewshot: int
    metric: str  # key in lm-eval's results, "metric,filter"


# Table 5 of the paper. lm-eval names GSM8k's accuracy exact_match (strict answer extraction).
PAPER_TASKS = (
    BenchTask("truthfulqa_mc2", 0, "acc,none"),
    BenchTask("gsm8k", 5, "exact_match,strict-match"),
    BenchTask("hellaswag", 0, "acc_norm,none"),
    BenchTask("mmlu", 0, "acc,none"),
)


def parse_tasks(spec: str) -> list[BenchTask]:
    """"paper" or a comma list of TASK[:SHOTS[:METRIC[:FILTER]]] (defaults: 0 shots, acc, filter none)."""
    if spec == "paper":
        return list(PAPER_TASKS)
    tasks = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        parts = item.split(":")
        name, shots = parts[0], parts[1] if len(parts) > 1 else "0"
        if len(parts) > 4 or not name or not shots.isdigit():
            raise UserError(f"bench task {item!r}: expected TASK[:SHOTS[:METRIC[:FILTER]]] with whole-number SHOTS")
        metric = parts[2] if len(parts) > 2 else "acc"
        filt = parts[3] if len(parts) > 3 else "none"
        tasks.append(BenchTask(name, int(shots), f"{metric},{filt}"))
    if not tasks:
        raise UserError("no bench tasks given")
    names = [t.task for t in tasks]
    if len(set(names)) != len(names):
        raise UserError("each bench task may be named once")
    return tasks


def resolve_checkpoint(path: Path) -> tuple[Path, Path | None]:
    """(checkpoint, default result file or None): a run directory means its latest iteration's checkpoint,
    whose result goes to the run's bench/ folder."""
    if (path / "config.json").is_file():
        parent = path.parent
        if path.name == "checkpoint" and re.fullmatch(r"iter_\d+", parent.name):
            return path, RunStore(parent.parent).bench(int(parent.name[5:]))
        return path, None
    store = RunStore(path)
    done = store.checkpoints()
    if done:
        return store.checkpoint(done[-1]), store.bench(done[-1])
    raise UserError(f"{path} is neither a model checkpoint (config.json) nor a run directory with checkpoints")


def run_bench(checkpoint: Path, tasks: list[BenchTask], *, include_path: str | None = None, limit: float | None = None,
              batch_size: int = 8, device: str = "cpu", seed: int = 0) -> dict:
    """Evaluate; returns {"scores": {task: value}, "average", "settings", "results" (raw lm-eval numbers)}."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise UserError("optune bench needs lm-evaluation-harness: pip install 'optune[bench]'") from None
    manager = TaskManager(include_path=include_path) if include_path else TaskManager()
    unknown = [t.task for t in tasks if t.task not in manager.all_tasks]
    if unknown:
        raise UserError(f"unknown lm-eval task(s): {', '.join(unknown)}")
    raw: dict[str, dict] = {}
    for shots in sorted({t.num_fewshot for t in tasks}):
        group = [t.task for t in tasks if t.num_fewshot == shots]
        out = simple_evaluate(model="hf", model_args={"pretrained": str(checkpoint), "dtype": "float32"},
                              tasks=group, num_fewshot=shots, batch_size=batch_size, device=device, limit=limit,
                              task_manager=manager, log_samples=False, random_seed=seed,
                              numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed)
        raw.update(out["results"])
    scores = {}
    for t in tasks:
        value = raw.get(t.task, {}).get(t.metric)
        if not isinstance(value, (int, float)):
            have = sorted(k for k in raw.get(t.task, {}) if "_stderr" not in k and k != "alias")
            raise UserError(f"lm-eval gave no metric {t.metric!r} for {t.task} (it has: {', '.join(have)})")
        scores[t.task] = 100.0 * float(value)
    return {"checkpoint": str(checkpoint.resolve()), "scores": scores,
            "average": sum(scores.values()) / len(scores),
            "settings": {"tasks": [asdict(t) for t in tasks], "limit": limit, "batch_size": batch_size,
                         "device": device, "seed": seed,
                         "lm_eval_version": importlib.metadata.version("lm_eval")},
            "results": json.loads(json.dumps(raw, default=str))}
