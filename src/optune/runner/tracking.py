"""Optional experiment trackers (TensorBoard, W&B, MLflow ...) through accelerate; none is required.

metrics.jsonl in the run directory is always written; this only mirrors it where the config asks.
`check_trackers` finds a tracker that is not installed before any work (the run directory included).
"""

from __future__ import annotations

import importlib.util

from optune.errors import UserError

TRACKERS = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
            "comet_ml": ("comet_ml",), "aim": ("aim",), "clearml": ("clearml",), "dvclive": ("dvclive",),
            "swanlab": ("swanlab",), "trackio": ("trackio",)}
"""accelerate's tracker names (report_to) -> the packages that provide each (any one of them will do)."""


def check_trackers(names: list[str]) -> None:
    """Every tracker `report_to` names is one accelerate knows and its package is installed; else one line naming
    the missing package. "all" (every installed one) needs nothing."""
    for name in names:
        if name == "all":
            continue
        if name not in TRACKERS:
            raise UserError(f"report_to {name!r}: not a tracker accelerate knows; one of {', '.join(TRACKERS)} or all")
        packages = TRACKERS[name]
        if not any(importlib.util.find_spec(p) is not None for p in packages):
            raise UserError(f"report_to {name}: the package {packages[0]} is not installed (pip install {packages[0]})")


class Tracker:
    def __init__(self, names: list[str], run_dir: str, config: dict):
        from accelerate import Accelerator

        try:
            self.accelerator = Accelerator(log_with=names, project_dir=run_dir, cpu=True)
            self.accelerator.init_trackers("optune", config=_flat(config))
        except (ValueError, ImportError) as err:
            raise UserError(f"report_to {names}: {str(err).splitlines()[0]}") from None

    def log(self, metrics: dict, step: int) -> None:
        self.accelerator.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def close(self) -> None:
        self.accelerator.end_training()


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def make_tracker(names: list[str], run_dir: str, config: dict) -> Tracker | None:
    return Tracker(names, run_dir, config) if names else None
