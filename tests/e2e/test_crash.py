"""Every write point is safe: SIGKILL `optune run`, `optune dpo` and `optune reward train` right after a file
event of the uninterrupted run, resume (sometimes killing the resume too), and compare the finished directory
with the uninterrupted one (harness.compare_trees).

The normal tier kills at a seeded sample of write points spread over every phase of the run; the slow tier
kills at every one. Each trial is a fork of a server that has imported torch, transformers and optune
once (tests/e2e/forkserver.py), so it costs the command's own work only.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.forkserver import Zygote
from tests.e2e.harness import Event, Rules, compare_trees, kill_after, run_to_end, sample_events

TINY = str(REPO / "configs" / "tiny.yaml")
NAME = "the-run"
SAMPLE = 20
"""Write points per command in the normal tier (the slow tier takes all of them)."""

RUN_RULES = Rules(skip=("times.json",), json_ignore={"metrics.json": ("time/",), "metrics.jsonl": ("time/",)},
                  text_drop={"config.yaml": "output_dir:"})
REWARD_RULES = Rules(json_ignore={"reward_stats.json": ("train_time_s",), "train_log.jsonl": ("time/",)},
                     text_drop={"reward_config.yaml": "output_dir:"})


@dataclass
class Command:
    new: Callable[[Path], list[str]]
    resume: Callable[[Path], list[str]]
    rules: Rules

    def restart(self, run: Path) -> list[str]:
        """What a user does after a kill: resume the directory if it exists, else run the same command again."""
        return self.resume(run) if run.exists() else self.new(run)


def run_command() -> Command:
    # 4 generation batches at iteration 0, and a training state saved after each of 3 of the 4 steps
    extra = ["generation.batch_size=4", "train.epochs=2", "train.save_steps=1"]
    return Command(lambda d: ["run", "-c", TINY, f"output_dir={d}", *extra],
                   lambda d: ["run", "--resume", str(d)], RUN_RULES)


def dpo_command(prefs: Path) -> Command:
    extra = ["train.epochs=2", "train.save_steps=1", "reward.batch_size=4"]
    return Command(lambda d: ["dpo", "-c", TINY, f"data.train={prefs}", f"output_dir={d}", *extra],
                   lambda d: ["dpo", "--resume", str(d)], RUN_RULES)


def reward_command(backbone: Path, train: Path, heldout: Path) -> Command:
    extra = ["max_length=32", "batch_size=8", "lr=3e-3", "warmup_ratio=0.2", "max_steps=7", "eval_every=3",
             "save_every=2", "stats_max_pairs=16"]
    return Command(lambda d: ["reward", "train", f"backbone={backbone}", f"train_files=[{train}]",
                              f"eval_files=[{heldout}]", f"output_dir={d}", *extra],
                   lambda d: ["reward", "train", "--resume", str(d)], REWARD_RULES)


@pytest.fixture(scope="module")
def zygote():
    server = Zygote()
    yield server
    server.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Preference pairs for dpo, and a tiny BERT with pairs for reward train (no hub, no download)."""
    from tests.unit.reward.conftest import make_bert, write_pairs

    root = tmp_path_factory.mktemp("inputs")
    prefs = root / "prefs.jsonl"
    prefs.write_text("".join(json.dumps({"prompt": f"Say something about item {i}.", "chosen": f"a calm answer {i}",
                                         "rejected": f"NO!! {i}"}) + "\n" for i in range(6)))
    bert = make_bert(root / "bert")
    return {"prefs": prefs, "bert": bert, "train": write_pairs(root / "train.jsonl", 48),
            "heldout": write_pairs(root / "heldout.jsonl", 16)}


def command(kind: str, inputs: dict) -> Command:
    if kind == "run":
        return run_command()
    if kind == "dpo":
        return dpo_command(inputs["prefs"])
    return reward_command(inputs["bert"], inputs["train"], inputs["heldout"])


@pytest.fixture(scope="module")
def references(zygote, inputs, tmp_path_factory):
    """kind -> (the uninterrupted run's directory, every file event it caused, in order); made once."""
    made: dict[str, tuple[Path, list[Event]]] = {}

    def get(kind: str) -> tuple[Path, list[Event]]:
        if kind not in made:
            root = tmp_path_factory.mktemp(f"reference-{kind}")
            folder = root / "w"
            folder.mkdir()
            rc, events = run_to_end(zygote, command(kind, inputs).new(folder / NAME), root / "log", (folder, NAME))
            assert rc == 0, (root / "log.err").read_text()[-3000:]
            assert len(events) >= 20, events  # a tiny run writes more than that; fewer means events were lost
            made[kind] = folder / NAME, events
        return made[kind]

    return get


def crash_trial(zygote: Zygote, cmd: Command, done: Path, events: list[Event], target: Event, root: Path,
                kill_resume_at: int | None) -> str:
    """Kill a fresh run right after `target`, restart it (killing that too after `kill_resume_at` events),
    finish it, and compare with the uninterrupted run. Returns where the kill landed."""
    root.mkdir()
    folder, log = root / "w", root / "log"
    folder.mkdir()
    run = folder / NAME
    rc, landed = kill_after(zygote, cmd.new(run), log, folder, NAME, target, events)
    # 0: after its last write the run may exit before the signal lands; it must have got that far, though
    assert rc == -9 or (rc == 0 and landed != "end"), f"kill after {target}: the run ended with {rc}\n{tail(log)}"
    if kill_resume_at is not None:
        rc, _ = kill_after(zygote, cmd.restart(run), log, folder, NAME, kill_resume_at)
        assert rc in (0, -9), f"resume after a kill at {target} failed ({rc})\n{tail(log)}"
    rc, _ = run_to_end(zygote, cmd.restart(run), log)
    assert rc == 0, f"finishing after a kill at {target} failed ({rc})\n{tail(log)}"
    try:
        compare_trees(run, done, cmd.rules)
    except AssertionError as err:
        raise AssertionError(f"kill after {target} (landed after {landed}): {err}") from None
    if landed == str(target) and re.fullmatch(r"replace RUN/iter_\d+/train_state.pt #\d+", landed):
        assert "training resumes after step" in log.read_text(), "a saved training state was not used"
    return landed


def tail(log: Path) -> str:
    err = Path(f"{log}.err")
    return err.read_text()[-3000:] if err.is_file() else ""


def sweep(zygote: Zygote, cmd: Command, reference: tuple[Path, list[Event]], root: Path, n: int | None,
          seed: int = 0) -> None:
    done, events = reference
    targets = events if n is None else sample_events(events, n, seed)
    rng = random.Random(seed)
    for i, target in enumerate(targets):
        # every third trial kills the resume as well, somewhere in its first events
        kill_resume_at = rng.randint(1, 12) if i % 3 == 2 else None
        crash_trial(zygote, cmd, done, events, target, root / f"trial{i:03d}", kill_resume_at)


@pytest.mark.parametrize("kind", ["run", "dpo", "reward"])
def test_sampled_write_points_resume_to_the_same_result(zygote, inputs, references, tmp_path, kind):
    seed = int(os.environ.get("OPTUNE_CRASH_SEED", "0"))
    sweep(zygote, command(kind, inputs), references(kind), tmp_path, SAMPLE, seed)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["run", "dpo", "reward"])
def test_every_write_point_resumes_to_the_same_result(zygote, inputs, references, tmp_path, kind):
    sweep(zygote, command(kind, inputs), references(kind), tmp_path, None)


# (kind, errno, fail from the n-th fsync on). A tiny run makes 68 fsyncs: 1-9 create the directory, then
# generation, scoring, bookkeeping, training states, checkpoints (around 30 and 55), held-out, metrics. The
# reward training makes 19: 1-5 create the directory, 6-11 training states and log, 12-18 export, 19 stats.
FAULTS = [("run", "ENOSPC", 1), ("run", "ENOSPC", 9), ("run", "ENOSPC", 30), ("run", "ENOSPC", 55),
          ("run", "EROFS", 5), ("run", "EROFS", 25), ("run", "EROFS", 50), ("reward", "ENOSPC", 7),
          ("reward", "EROFS", 10), ("reward", "ENOSPC", 14), ("reward", "ENOSPC", 19)]
MESSAGES = {"ENOSPC": "No space left on device", "EROFS": "Read-only file system"}


@pytest.mark.parametrize("kind,errno_name,after", FAULTS)
def test_disk_full_or_read_only_stops_cleanly_and_resumes(zygote, inputs, references, tmp_path, kind,
                                                            errno_name, after):
    cmd = command(kind, inputs)
    folder, log = tmp_path / "w", tmp_path / "log"
    folder.mkdir()
    run = folder / NAME
    fault = {"under": str(folder), "errno_name": errno_name, "after": after}
    rc, _ = run_to_end(zygote, cmd.new(run), log, fault=fault)
    err = Path(f"{log}.err").read_text()
    # 3: a run whose directory exists stopped midway and resumes (the line names the command); 2: nothing made
    assert rc == (3 if run.exists() else 2), err[-3000:]
    if rc == 3:
        assert f"resume it with: optune {'run' if kind == 'run' else 'reward train'} --resume {run}" in err, err[-3000:]
    lines = [line for line in err.replace("\r", "\n").splitlines() if "error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    assert "cannot " in lines[0] and MESSAGES[errno_name] in lines[0], lines[0]
    if run.exists():  # nothing half-written: no temporaries, every JSON file whole
        assert not [p for p in run.rglob(".*") if p.name != ".optune-run"], "temporary files left behind"
        for path in run.rglob("*.json*"):
            rows = path.read_text().splitlines() if path.suffix == ".jsonl" else [path.read_text()]
            [json.loads(row) for row in rows]
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "leftovers beside the run"
    rc, _ = run_to_end(zygote, cmd.restart(run), log)  # the fault is gone
    assert rc == 0, tail(log)
    compare_trees(run, references(kind)[0], cmd.rules)
