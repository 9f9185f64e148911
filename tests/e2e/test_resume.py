"""Failing well and resuming: a remote-reward run whose server goes down stops with exit 3 and the resume
command, resumes against a server on a new port (reward.url, a deployment-only key) and finishes equal to an
uninterrupted run; SIGTERM stops a real `optune run` process like Ctrl-C (exit 143, lock released, no temp
files) and the run resumes to the same result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from optune.cli import main
from tests.conftest import REPO, interruptible
from tests.e2e.harness import Rules, compare_trees

TINY = str(REPO / "configs" / "tiny.yaml")
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
RULES = Rules(skip=("times.json", "config.yaml"), json_ignore={"metrics.json": ("time/",), "metrics.jsonl": ("time/",),
                                                               "summary.json": ("best_checkpoint", "final_checkpoint")})
"""config.yaml is compared apart (its output_dir and reward.url differ by design); summary.json names the run's own
checkpoint paths."""


class Server:
    """`optune reward serve` of a tiny BERT on a free loopback port, as its own process."""

    def __init__(self, model: Path, log: Path):
        with open(log, "w") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "optune", "reward", "serve", "--model", str(model),
                                          "--port", "0"], stdout=subprocess.PIPE, stderr=err, text=True, env=ENV,
                                         preexec_fn=interruptible)
        line = self.proc.stdout.readline()  # printed once the socket listens
        assert line.startswith("serving "), f"{line!r}: {log.read_text()[-2000:]}"
        self.url = line.split(" at ")[1].split()[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            assert self.proc.wait(timeout=30) == 0


def same_config(done: Path, reference: Path, *differ: str) -> None:
    """config.yaml of both runs equal but for output_dir and the `differ` keys (dotted)."""
    configs = [yaml.safe_load((run / "config.yaml").read_text()) for run in (done, reference)]
    for cfg in configs:
        cfg.pop("output_dir")
        for key in differ:
            section, leaf = key.split(".")
            cfg[section].pop(leaf)
    assert configs[0] == configs[1]


def test_remote_reward_run_stopped_by_its_server_resumes_against_a_new_port(tmp_path, capsys, monkeypatch):
    from optune.store import RunStore
    from tests.unit.reward.conftest import make_bert

    bert = make_bert(tmp_path / "bert")
    remote = ["run", "-c", TINY, "reward.backend=remote", "reward.route=optune", "reward.batch_size=4",
              "reward.max_retries=1", "reward.timeout_s=20", "generation.batch_size=4"]
    first = Server(bert, tmp_path / "a.log")
    try:
        assert main([*remote, f"reward.url={first.url}", f"output_dir={tmp_path / 'reference'}"]) == 0
    finally:
        first.stop()

    second = Server(bert, tmp_path / "b.log")
    write_metrics = RunStore.write_metrics

    def down_after_iteration0(store, t, metrics):  # the server goes away once iteration 0 is finished
        write_metrics(store, t, metrics)
        if t == 0:
            second.stop()

    monkeypatch.setattr(RunStore, "write_metrics", down_after_iteration0)
    run = tmp_path / "run"
    capsys.readouterr()
    try:
        assert main([*remote, f"reward.url={second.url}", f"output_dir={run}"]) == 3
    finally:
        second.stop()
    monkeypatch.undo()
    err = capsys.readouterr().err
    retries = [line for line in err.splitlines() if "attempt 1 of 2 failed" in line]
    assert len(retries) == 1 and f"cannot reach reward server at {second.url}" in retries[0], err[-2000:]
    assert "retrying in 1 s" in retries[0]
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"optune run: error: cannot reach reward server at {second.url}/rewards"), last
    assert f"resume it with: optune run --resume {run} (adding reward.url=NEW_URL if the server moved)" in last
    assert (run / "iter_000" / "metrics.json").is_file() and not (run / "iter_001" / "metrics.json").exists()
    assert not (run / ".optune-lock").exists()

    third = Server(bert, tmp_path / "c.log")
    try:
        assert main(["run", "--resume", str(run), f"reward.url={third.url}"]) == 0
    finally:
        third.stop()
    assert f"resuming with reward.url='{third.url}' (written to config.yaml)" in capsys.readouterr().out
    assert yaml.safe_load((run / "config.yaml").read_text())["reward"]["url"] == third.url
    compare_trees(run, tmp_path / "reference", RULES)  # checkpoints by sha256, responses and pairs byte for byte
    same_config(run, tmp_path / "reference", "reward.url")


def test_sigterm_stops_a_run_like_ctrl_c_and_it_resumes(tmp_path):
    args = [f"output_dir={tmp_path / 'reference'}", "generation.batch_size=4", "train.save_steps=1"]
    assert main(["run", "-c", TINY, *args]) == 0
    run = tmp_path / "run"
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "optune", "run", "-c", TINY, f"output_dir={run}", *args[1:]],
                                stdout=subprocess.DEVNULL, stderr=err, env=ENV)
    try:
        deadline = time.monotonic() + 300
        while not (run / "iter_000" / "gen" / "batch_00001.jsonl").exists():  # midway through generation
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = log.read_text().strip().splitlines()
    assert lines[-1] == f"optune run: terminated (SIGTERM); resume with: optune run --resume {run}", lines[-5:]
    assert "Traceback" not in log.read_text()
    assert not (run / ".optune-lock").exists(), "the lock was not released"
    assert not [p for p in run.rglob(".*") if p.name != ".optune-run"], "temporary files left behind"
    assert not (run / "iter_001").exists()
    assert main(["run", "--resume", str(run)]) == 0
    compare_trees(run, tmp_path / "reference", RULES)
    same_config(run, tmp_path / "reference")
