"""Mid-training state: weights, optimizer, schedule, RNG, step and metrics so far, saved atomically and resumed.

Both trainers use it (the policy's DPO steps, optune.training.update, and the reward model's,
optune.rewardmodel.train): a run killed during training continues from the last saved step, and because the
step plan is a function of the seed and the RNG (dropout) is restored, skipping the finished steps
reproduces the uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path

import torch

from optune.store import atomic_write


def save_train_state(path: Path, model, optimizer, scheduler, step: int, totals: dict, rows: list[dict]) -> None:
    """Weights, optimizer, schedule and CPU RNG after `step` finished steps, with the metrics so far (atomic)."""
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "totals": totals, "rows": rows}
    atomic_write(path, lambda f: torch.save(state, f))


def resume(state_path: Path | None, model, optimizer, scheduler, plan: list, progress, log):
    """(finished steps, metric sums, log rows) of a saved training state, replayed into progress and log."""
    start, totals, rows = load_train_state(state_path, model, optimizer, scheduler)
    if log is not None:
        for row in rows:
            log(row)
    if start:
        print(f"training resumes after step {start} of {len(plan)} ({state_path.name})", flush=True)
        if progress is not None:
            progress.update(sum(len(mb) for step in plan[:start] for mb in step))
    return start, totals, rows


def load_train_state(path: Path | None, model, optimizer, scheduler) -> tuple[int, dict, list[dict]]:
    """(finished steps, metric sums, log rows) from a saved state, loaded into the objects; (0, {}, []) if none."""
    if path is None or not path.is_file():  # a save cut short by a kill left only a temp file (store cleans it)
        return 0, {}, []
    try:
        state = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
        step, totals, rows = state["step"], state["totals"], state["rows"]
    except Exception as err:  # unpickling garbage raises anything; the state is only a shortcut
        # training from step 0 reproduces what the saved state would have continued, so drop it and say so
        from optune.store import warn

        warn(f"{path} is damaged ({type(err).__name__}): removed it, training this iteration from its start")
        path.unlink(missing_ok=True)
        return 0, {}, []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "rng" in state:  # states saved before it was recorded resume without it
        torch.set_rng_state(state["rng"])
    return step, totals, rows
