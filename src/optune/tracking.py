"""Optional experiment trackers (TensorBoard, W&B, MLflow ...) through accelerate; none is required.

metrics.jsonl in the run directory is always written; this only mirrors it where the config asks.
"""

from __future__ import annotations

from optune.errors import UserError


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
