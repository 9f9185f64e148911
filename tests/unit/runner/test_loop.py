"""The loop's own decisions, on stand-in iterations: an iteration whose pairs all tie is a warning, two in a row
stop the run (resumable: what finished stays), and the log line of fixed pairs names no generation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from optune.errors import UserError
from optune.runner import loop
from optune.runner.metrics import IterationMetrics


def metrics(t: int, ties: int, trained: int) -> dict:
    return {"iteration": t, "pairs/ties": ties, "pairs/trained": trained, "pairs/dropped_ties": ties,
            "selection/n_regenerated": 3, "selection/frac_regenerated": 1.0, "objective/scores": 0.5,
            "time/generation_s": 2.0, "time/rewarding_s": 0.25, "time/training_s": 3.0, "time/bookkeeping_s": 0.75,
            "time/iteration_s": 6.0, **({"loss": 0.6931, "rewards/accuracies": 0.5} if trained else {})}


class Store:
    root = "runs/x"

    def __init__(self, finished: int = 0, done: list[dict] | None = None):
        self.done = list(done or [])
        self.n_finished = finished

    def rebuild_metrics_log(self):
        pass

    def finished(self, t):
        return t < self.n_finished

    def metrics(self, t):
        return t

    def responses(self, t):
        return t

    def read_finished(self, t, path, read):
        return read(path)


def run(monkeypatch, ties_per_iteration, iterations=4, finished=0):
    """loop._run with iteration t's pairs (ties, trained) from `ties_per_iteration`; returns (log, ran)."""
    plan = [metrics(t, ties, 3 - ties) for t, ties in enumerate(ties_per_iteration)]
    ran = []

    def iteration(ctx, t, state, model):
        ran.append(t)
        return state, model, IterationMetrics.from_log(plan[t])

    monkeypatch.setattr(loop, "run_iteration", iteration)
    monkeypatch.setattr(loop, "start_policy", lambda ctx, t: "model")
    monkeypatch.setattr(loop, "read_json", lambda t: plan[t])
    monkeypatch.setattr(loop, "read_jsonl", lambda t: [])
    ctx = SimpleNamespace(cfg=SimpleNamespace(iterations=iterations, eval=SimpleNamespace(early_stop=0),
                                              reward=SimpleNamespace(backend="callable")),
                          store=Store(finished), dist=SimpleNamespace(is_main=True), tracker=None, generator=None,
                          source=SimpleNamespace(generates=True))
    log: list[str] = []
    try:
        loop._run(ctx, log.append)
    except UserError as err:
        log.append(f"ERROR {err}")
    return log, ran


def test_one_all_tie_iteration_is_a_warning_naming_it(monkeypatch):
    log, ran = run(monkeypatch, [0, 3, 1, 0])
    assert ran == [0, 1, 2, 3]
    warnings = [line for line in log if "warning" in line]
    assert warnings == ["iter 1 warning: every pair tied (all 3 dropped: nothing trained); does the reward "
                        "(callable) give every response the same score? A second such iteration in a row stops the "
                        "run"]


def test_two_all_tie_iterations_in_a_row_stop_the_run(monkeypatch):
    log, ran = run(monkeypatch, [3, 3, 0, 0])
    assert ran == [0, 1]  # iteration 1 was written before the stop: --resume starts at 2
    assert log[-1] == ("ERROR stopped after iteration 1: every pair tied in iterations 0 and 1, so nothing was "
                       "trained; the reward gives both responses of a prompt the same score (fix the reward, then "
                       "resume the run)")
    assert sum("warning: every pair tied" in line for line in log) == 2


def test_a_resumed_run_goes_on_once_the_reward_tells_answers_apart(monkeypatch):
    log, ran = run(monkeypatch, [3, 3, 0, 0], finished=2)
    assert ran == [2, 3] and not any("ERROR" in line or "warning" in line for line in log)


def test_some_ties_are_no_warning(monkeypatch):
    log, _ = run(monkeypatch, [2, 2, 2, 2])
    assert not any("warning" in line or "ERROR" in line for line in log)


def test_summary_line_online_and_offline():
    m = IterationMetrics.from_log(metrics(0, 1, 2))
    assert loop.summary_line(m) == ("iter 0: regenerated 3 (100%) | reward chosen 0.5000 | pairs 2 (ties dropped 1) "
                                    "| loss 0.6931 acc 0.50 | gen 2s reward 0.2s train 3s (6s)")
    offline = loop.summary_line(m, generated=False)
    assert offline == ("iter 0: reward chosen 0.5000 | pairs 2 (ties dropped 1) | loss 0.6931 acc 0.50 | reward "
                       "0.2s train 3s (6s)")
    assert "regenerated" not in offline and "gen " not in offline


@pytest.mark.parametrize("ties,trained,expected", [(0, 3, False), (2, 1, False), (3, 0, True),
                                                    (3, 3, False)])  # loss.drop_ties=false: ties are trained on
def test_all_tied(ties, trained, expected):
    assert IterationMetrics.from_log(metrics(0, ties, trained)).all_tied is expected
