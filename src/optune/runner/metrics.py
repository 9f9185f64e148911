"""One iteration's metrics as a typed record, and its log form under TRL's names (metrics.json, metrics.jsonl).

The loop, early stop, the health warnings and `RunResult` read attributes; `to_log` gives the flat dict of
today's names (`loss`, `rewards/margins`, `objective/scores`, `eval/heldout_reward`, `time/training_s`, ...)
and `from_log` reads one back, so a resumed run and `optune report` read what earlier versions wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PHASES = ("generation", "rewarding", "training", "bookkeeping", "eval")
"""An iteration's timed phases (the paper's Table 1); "eval" is not counted as the iteration's work."""

STATS = ("length_words", "length_tokens", "eos_rate", "repetition_rate")
"""The held-out answers' health (optune.runner.health.response_stats), in log order."""
KLS = ("kl_reference", "kl_initial")


@dataclass(frozen=True)
class Heldout:
    """One policy's held-out metrics: the reward of its greedy answers and their health."""

    reward: float
    stats: dict[str, float] = field(default_factory=dict)
    """`STATS` by name (length, EOS rate, repetition), where measured."""
    constraint_pass: dict[str, float] = field(default_factory=dict)
    """The built-in task's pass rate per constraint kind."""
    kl: dict[str, float] = field(default_factory=dict)
    """Mean log-ratio to the reference and to pi_0 (`KLS`), where measured."""

    def health(self) -> dict[str, float]:
        """What optune.runner.health.warnings compares: `reward` and the answers' stats."""
        return {"reward": self.reward, **self.stats}

    def to_log(self, suffix: str = "") -> dict[str, float]:
        out = {f"eval/heldout_reward{suffix}": self.reward}
        out.update({f"eval/{k}{suffix}": v for k, v in self.stats.items()})
        out.update({f"eval/constraint_pass/{k}{suffix}": v for k, v in self.constraint_pass.items()})
        out.update({f"eval/{k}{suffix}": v for k, v in self.kl.items()})
        return out

    @classmethod
    def from_log(cls, log: dict, suffix: str = "") -> Heldout | None:
        if f"eval/heldout_reward{suffix}" not in log:
            return None
        kinds = [k.removeprefix("eval/constraint_pass/") for k in log if k.startswith("eval/constraint_pass/")]
        kinds = [k.removesuffix(suffix) for k in kinds if k.endswith(suffix) and (suffix or not k.endswith("_start"))]
        return cls(log[f"eval/heldout_reward{suffix}"],
                   {k: log[f"eval/{k}{suffix}"] for k in STATS if f"eval/{k}{suffix}" in log},
                   {k: log[f"eval/constraint_pass/{k}{suffix}"] for k in kinds},
                   {k: log[f"eval/{k}{suffix}"] for k in KLS if f"eval/{k}{suffix}" in log})


@dataclass(frozen=True)
class IterationMetrics:
    """What iteration t did and measured."""

    iteration: int
    train: dict[str, float]
    """Training's means under TRL's names (loss, rewards/chosen, rewards/margins, logps/*, lr, grad_norm, ...);
    only train/steps where nothing was trained."""
    scores_chosen: float
    """Mean reward of each prompt's chosen (higher-reward) response (objective/scores)."""
    scores_margin: float
    scores_all: float
    contain_eos: float
    """Share of the iteration's responses that ended with EOS (val/contain_eos_token)."""
    pairs_trained: int
    ties: int
    """Prompts whose two responses had equal rewards (pairs/ties)."""
    dropped_ties: int
    n_regenerated: int
    frac_regenerated: float
    heldout: Heldout | None = None
    """pi_{t+1}'s held-out metrics (None without held-out prompts)."""
    start: Heldout | None = None
    """pi_0's, measured at iteration 0 only."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds per phase (`PHASES`)."""
    elapsed_s: float = 0.0
    """The work seconds of every iteration up to this one."""

    @property
    def work_s(self) -> float:
        """The iteration's seconds without the held-out evaluation."""
        return work_seconds(self.seconds)

    @property
    def all_tied(self) -> bool:
        """Every pair tied and was dropped (loss.drop_ties), so nothing was trained: one iteration may show that by
        chance, two in a row mean a reward that cannot tell answers apart."""
        return self.pairs_trained == 0 and self.ties > 0

    def __getitem__(self, name: str) -> float:
        """One metric by its log name (`m["eval/heldout_reward"]`), for code written against the dicts `RunResult`
        gave before this record; a KeyError where the iteration did not measure it."""
        return self.to_log()[name]

    def to_log(self) -> dict[str, float]:
        """The flat dict of metrics.json, TRL's names where they mean the same."""
        out: dict = {"iteration": self.iteration, **self.train, "objective/scores": self.scores_chosen,
                     "objective/scores_margin": self.scores_margin, "objective/scores_all": self.scores_all,
                     "val/contain_eos_token": self.contain_eos, "pairs/trained": self.pairs_trained,
                     "pairs/dropped_ties": self.dropped_ties, "pairs/ties": self.ties,
                     "selection/n_regenerated": self.n_regenerated,
                     "selection/frac_regenerated": self.frac_regenerated}
        if self.heldout is not None:
            out.update(self.heldout.to_log())
        if self.start is not None:
            out.update(self.start.to_log("_start"))
        work = self.work_s
        for phase in PHASES:
            if phase in self.seconds:
                out[f"time/{phase}_s"] = self.seconds[phase]
                if phase != "eval" and work:
                    out[f"time/{phase}_frac"] = self.seconds[phase] / work
        if self.seconds:
            out["time/iteration_s"] = work
            out["time/elapsed_s"] = self.elapsed_s
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_log(cls, log: dict) -> IterationMetrics:
        """A metrics.json as written by `to_log` (or by an earlier version: keys it lacks read as absent)."""
        known = {"iteration", "objective/scores", "objective/scores_margin", "objective/scores_all",
                 "val/contain_eos_token", "pairs/trained", "pairs/dropped_ties", "pairs/ties",
                 "selection/n_regenerated", "selection/frac_regenerated"}
        train = {k: v for k, v in log.items()
                 if k not in known and not k.startswith(("eval/", "time/"))}
        nan = float("nan")
        return cls(iteration=log["iteration"], train=train, scores_chosen=log.get("objective/scores", nan),
                   scores_margin=log.get("objective/scores_margin", nan),
                   scores_all=log.get("objective/scores_all", nan),
                   contain_eos=log.get("val/contain_eos_token", nan), pairs_trained=log.get("pairs/trained", 0),
                   ties=log.get("pairs/ties", 0), dropped_ties=log.get("pairs/dropped_ties", 0),
                   n_regenerated=log.get("selection/n_regenerated", 0),
                   frac_regenerated=log.get("selection/frac_regenerated", nan),
                   heldout=Heldout.from_log(log), start=Heldout.from_log(log, "_start"),
                   seconds={p: log[f"time/{p}_s"] for p in PHASES if f"time/{p}_s" in log},
                   elapsed_s=log.get("time/elapsed_s", 0.0))


def work_seconds(seconds: dict[str, float]) -> float:
    """An iteration's work: the seconds of every phase but the held-out evaluation."""
    return sum(v for k, v in seconds.items() if k != "eval")


def heldout_curve(metrics: list[IterationMetrics]) -> list[tuple[int, float]]:
    """(iteration, held-out reward of pi_{t+1}) of every iteration that measured one."""
    return [(m.iteration, m.heldout.reward) for m in metrics if m.heldout is not None]


def start_reward(metrics: list[IterationMetrics]) -> float | None:
    """pi_0's held-out reward, measured by iteration 0."""
    return metrics[0].start.reward if metrics and metrics[0].start is not None else None
