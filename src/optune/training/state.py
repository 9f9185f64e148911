"""Mid-training state: weights, optimizer, schedule, RNG, step and metrics so far, saved atomically and resumed.

Both trainers use it (the policy's DPO steps, optune.training.update, and the reward model's,
optune.rewardmodel.train): a run killed during training continues from the last saved step, and because the
step plan is a function of the seed and the RNG (dropout) is restored, skipping the finished steps
reproduces the uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from optune.store import atomic_write


def save_train_state(path: Path, model, optimizer, scheduler, step: int, totals: dict, rows: list[dict]) -> None:
    """Weights, optimizer, schedule and CPU RNG after `step` finished steps, with the metrics so far (atomic)."""
    state = {"step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "totals": totals, "rows": rows}
    atomic_write(path, lambda f: torch.save(state, f))


def resume(state_path: Path | None, model, optimizer, scheduler, plan: list, progress, log,
           then: str = "training this iteration from its start"):
    """(finished steps, metric sums, log rows) of a saved training state, replayed into progress and log; `then`:
    what a damaged state's line says happens instead (`load_train_state`)."""
    start, totals, rows = load_train_state(state_path, model, optimizer, scheduler, then,
                                           lambda state: None if state["step"] <= len(plan) else
                                           f"it is at step {state['step']} of a plan of {len(plan)}")
    if log is not None:
        for row in rows:
            log(row)
    if start and state_path is not None:
        print(f"training resumes after step {start} of {len(plan)} ({state_path.name})", flush=True)
        if progress is not None:
            progress.update(sum(len(mb) for step in plan[:start] for mb in step))
    return start, totals, rows


def load_train_state(path: Path | None, model, optimizer, scheduler,
                     then: str = "training this iteration from its start",
                     fits: Callable[[dict], str | None] | None = None) -> tuple[int, dict, list[dict]]:
    """(finished steps, metric sums, log rows) from a saved state, loaded into the objects; (0, {}, []) if none.

    A state that does not read, or does not fit these objects (another shape or set of weights, another
    optimizer), is removed with one line and training starts from step 0, which reproduces what the state would
    have continued. It is checked whole before any of it is applied, so nothing is loaded half-way; `fits(state)`
    adds the caller's own checks (what is wrong, or None), `then` says what happens next.
    """
    if path is None or not path.is_file():  # a save cut short by a kill left only a temp file (store cleans it)
        return 0, {}, []
    try:
        state = torch.load(path, map_location=next(model.parameters()).device, weights_only=False)
        problem = mismatch(state, model, optimizer, scheduler)
        if problem is None and fits is not None:
            problem = fits(state)
    except Exception as err:  # unpickling garbage raises anything; the state is only a shortcut
        problem = type(err).__name__
    if problem is not None:
        # training from step 0 reproduces what the saved state would have continued, so drop it and say so
        from optune.store import warn

        warn(f"{path} is damaged ({problem}): removed it, {then}")
        path.unlink(missing_ok=True)
        return 0, {}, []
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "rng" in state:  # states saved before it was recorded resume without it
        torch.set_rng_state(state["rng"])
    return state["step"], state["totals"], state["rows"]


def mismatch(state, model, optimizer, scheduler) -> str | None:
    """What keeps a loaded training state from being applied to these objects, in a few words; None if nothing."""
    if not isinstance(state, dict):
        return "not a training state"
    for key, kind in (("step", int), ("totals", dict), ("rows", list), ("model", dict), ("optimizer", dict),
                      ("scheduler", dict)):
        if not isinstance(state.get(key), kind) or (key == "step" and state[key] < 0):
            return f"no {key!r} in it" if key not in state else f"its {key!r} is not a {kind.__name__}"
    problem = _weights_mismatch(state["model"], model.state_dict())
    problem = problem or _optimizer_mismatch(state["optimizer"], optimizer)
    if problem is None and set(state["scheduler"]) != set(scheduler.state_dict()):
        problem = "its learning-rate schedule is another kind"
    if problem is None and "rng" in state:
        rng, now = state["rng"], torch.get_rng_state()
        if not (isinstance(rng, torch.Tensor) and rng.dtype == now.dtype and rng.shape == now.shape):
            problem = "its random number generator state is not one"
    return problem


def _shape(value) -> list[int] | None:
    return list(value.shape) if isinstance(value, torch.Tensor) else None


def _weights_mismatch(saved: dict, current: dict) -> str | None:
    missing, extra = [k for k in current if k not in saved], [k for k in saved if k not in current]
    if missing or extra:
        return (f"weight {missing[0]!r} is not in it" if missing else f"it holds weight {extra[0]!r}, which the model "
                "has not")
    for key, tensor in current.items():
        if _shape(saved[key]) != list(tensor.shape):
            return f"weight {key!r} is {_shape(saved[key])} where the model's is {list(tensor.shape)}"
    return None


def _optimizer_mismatch(saved: dict, optimizer) -> str | None:
    """Its parameter groups hold as many parameters as the optimizer's, and each parameter's state (momentum,
    averages) has that parameter's shape (scalars such as the step count aside)."""
    groups, states = saved.get("param_groups"), saved.get("state")
    if not (isinstance(groups, list) and isinstance(states, dict)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)):
        return "its optimizer state is not one"
    if [len(g["params"]) for g in groups] != [len(g["params"]) for g in optimizer.param_groups]:
        return "its optimizer is for another set of weights"
    params = {i: p for g, mine in zip(groups, optimizer.param_groups) for i, p in zip(g["params"], mine["params"])}
    for i, entry in states.items():
        if i not in params or not isinstance(entry, dict):
            return "its optimizer is for another set of weights"
        for name, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() and list(value.shape) != list(params[i].shape):
                return (f"its optimizer's {name!r} is {list(value.shape)} where the weight's is "
                        f"{list(params[i].shape)}")
    return None
