"""End-to-end runs of `optune run` on the tiny random policy: the whole loop, invariants, resume, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from optune.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.slow
TINY = str(REPO / "configs" / "tiny.yaml")


def run_cli(*args) -> int:
    return main(["run", "-c", TINY, *args])


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def strip_times(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if not k.startswith("time/")} for m in metrics]


def check_complete(run: Path, n_prompts: int = 8, iterations: int = 2) -> None:
    """Every prompt has exactly two scored responses; every generation batch holds distinct prompts."""
    assert len(rows(run / "metrics.jsonl")) == iterations
    for t in range(iterations):
        it = run / f"iter_{t:03d}"
        state = rows(it / "responses.jsonl")
        assert len(state) == n_prompts and len({r["prompt_id"] for r in state}) == n_prompts
        assert all(len(r["responses"]) == 2 and all("reward" in s for s in r["responses"]) for r in state)
        generated = [r["prompt_id"] for f in sorted((it / "gen").iterdir()) for r in rows(f)]
        assert sorted(generated) == sorted(json.loads((it / "selection.json").read_text())["prompt_ids"])
        assert (it / "checkpoint" / "model.safetensors").is_file()
        assert not [p for p in run.rglob(".*") if p.name != ".optune-run"], "temporary files left behind"


def layout_patterns() -> list[str]:
    """Glob patterns of every file the store's docstring lists (RUN/..., t and k as wildcards)."""
    import re

    from optune import store

    paths = re.findall(r"RUN/(\S+)", store.__doc__)
    return [re.sub(r"iter_t|batch_k|iter_000", lambda m: {"iter_t": "iter_[0-9][0-9][0-9]", "batch_k":
                                                           "batch_[0-9][0-9][0-9][0-9][0-9]"}.get(m[0], m[0]), p)
            .rstrip(",") for p in paths]


def check_layout(run: Path) -> None:
    """Every file written matches a line of the store's layout docstring, and every layout line is used."""
    patterns = layout_patterns()
    files = [p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()]
    unmatched = [f for f in files if not any(fnmatchcase(f, pat) for pat in patterns)]
    assert not unmatched, f"files not in optune.store's layout docstring: {unmatched}"
    optional = {"iter_[0-9][0-9][0-9]/train_state.pt", "bench/iter_[0-9][0-9][0-9].json",
                "export/preferences.parquet", "export/preferences.jsonl"}
    unused = [pat for pat in patterns if pat not in optional and not any(fnmatchcase(f, pat) for f in files)]
    assert not unused, f"layout lines no file matched: {unused}"


def test_tiny_run_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert run_cli(f"output_dir={run}") == 0
    out = capsys.readouterr().out
    assert "iter 1: regenerated 4 (50%)" in out
    check_complete(run)
    check_layout(run)
    metrics = rows(run / "metrics.jsonl")
    assert metrics[0]["selection/frac_regenerated"] == 1.0 and metrics[1]["selection/frac_regenerated"] == 0.5
    for key in ("loss", "rewards/chosen", "rewards/margins", "rewards/accuracies", "weights/mean",
                "eval/heldout_reward", "time/generation_s", "time/training_frac", "pairs/dropped_ties"):
        assert key in metrics[1]
    # reuse: prompts not selected at iteration 1 keep their iteration-0 responses
    picked = set(json.loads((run / "iter_001" / "selection.json").read_text())["prompt_ids"])
    before = {r["prompt_id"]: r for r in rows(run / "iter_000" / "responses.jsonl")}
    for r in rows(run / "iter_001" / "responses.jsonl"):
        gens = {s["generated_at"] for s in r["responses"]}
        assert gens == ({1} if r["prompt_id"] in picked else {0})
        if r["prompt_id"] not in picked:
            assert r == before[r["prompt_id"]]
    # optune picks the lowest chosen rewards of iteration 0
    chosen = sorted(before.values(), key=lambda r: max(s["reward"] for s in r["responses"]))
    assert picked == {r["prompt_id"] for r in chosen[:4]}
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(run / "iter_001" / "checkpoint")


def test_all_ties_iteration_trains_nothing_and_finishes(tmp_path, capsys):
    """A constant reward makes every pair a tie: nothing is trained, the run still completes."""
    flat = tmp_path / "flat.py"
    flat.write_text("def reward(prompts, responses):\n    return [0.5] * len(responses)\n")
    run = tmp_path / "run"
    assert run_cli(f"output_dir={run}", f"reward.function={flat}:reward") == 0
    metrics = rows(run / "metrics.jsonl")
    assert [m["pairs/trained"] for m in metrics] == [0, 0] and all("loss" not in m for m in metrics)
    assert "no training" in capsys.readouterr().out
    check_complete(run)


def test_rho1_optune_equals_full(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(f"output_dir={a}", "selection.rho=1.0") == 0
    assert run_cli(f"output_dir={b}", "selection.strategy=full") == 0
    for t in (0, 1):
        assert (a / f"iter_{t:03d}" / "pairs.jsonl").read_text() == (b / f"iter_{t:03d}" / "pairs.jsonl").read_text()
    assert strip_times(rows(a / "metrics.jsonl")) == strip_times(rows(b / "metrics.jsonl"))


def test_start_from_shared_iteration0(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(f"output_dir={a}") == 0
    assert run_cli(f"output_dir={b}", f"init_from={a}", "selection.strategy=random") == 0
    assert (a / "iter_000" / "responses.jsonl").read_text() == (b / "iter_000" / "responses.jsonl").read_text()
    assert rows(b / "metrics.jsonl")[0] == rows(a / "metrics.jsonl")[0]
    for i, differs in enumerate(("seed=5", "loss.type=dpo", "train.lr=5e-4")):
        assert run_cli(f"output_dir={tmp_path / f'c{i}'}", f"init_from={a}", differs) == 2
        assert not (tmp_path / f"c{i}").exists()
    # a run made before a config key existed still matches: missing keys compare as their defaults
    cfg = a / "config.yaml"
    cfg.write_text("".join(line for line in cfg.read_text().splitlines(True) if "eval_greedy" not in line))
    assert run_cli(f"output_dir={tmp_path / 'd'}", f"init_from={a}", "selection.rho=1.0") == 0


def _start(run: Path, *extra) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.Popen([sys.executable, "-m", "optune.cli", "run", "-c", TINY, f"output_dir={run}", *extra],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_when(proc: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


KILL_AT = {"generation": "gen/batch_00000.jsonl", "training": "ref_logps.json", "mid-training": "train_state.pt"}


@pytest.mark.parametrize("phase", sorted(KILL_AT))
def test_resume_after_sigkill(tmp_path, phase, capsys):
    # small batches make generation span many files; many epochs make training long enough to hit;
    # the training state is saved every 3 of the iteration's 60 steps
    extra = ["generation.batch_size=2", "train.epochs=30", "train.save_steps=3"]
    reference = tmp_path / "clean"
    assert run_cli(f"output_dir={reference}", *extra) == 0
    run = tmp_path / "killed"
    proc = _start(run, *extra)
    _kill_when(proc, run / "iter_001" / KILL_AT[phase])
    assert not (run / "iter_001" / "metrics.json").exists(), "killed too late"
    if phase == "mid-training":
        assert not (run / "iter_001" / "checkpoint").exists(), "killed too late"
    assert main(["run", "--resume", str(run)]) == 0
    assert ("training resumes after step" in capsys.readouterr().out) == (phase == "mid-training")
    check_complete(run)
    # resuming reproduces the uninterrupted run exactly: nothing lost, nothing generated twice
    for t in (0, 1):
        for name in ("responses.jsonl", "pairs.jsonl"):
            assert (run / f"iter_{t:03d}" / name).read_text() == (reference / f"iter_{t:03d}" / name).read_text()
    assert strip_times(rows(run / "metrics.jsonl")) == strip_times(rows(reference / "metrics.jsonl"))
    for name in ("model.safetensors", "train_log.jsonl"):
        ckpt = Path("iter_001") / "checkpoint" / name
        assert (run / ckpt).read_bytes() == (reference / ckpt).read_bytes()
    assert not (run / "iter_001" / "train_state.pt").exists()


def write(path: Path, rows_: list) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows_))
    return str(path)


BAD = {
    "missing prompt file": (["data.train=/no/such.jsonl"], "does not exist"),
    "empty prompt set": (["data.train={empty}"], "is empty"),
    "record without prompt": (["data.train={noprompt}"], "no prompt text"),
    "duplicate ids": (["data.train={dupes}"], "duplicate prompt id"),
    "rho above 1": (["selection.rho=1.5"], "selection.rho must be in (0, 1]"),
    "rho zero": (["selection.rho=0"], "selection.rho must be in (0, 1]"),
    "unknown strategy": (["selection.strategy=smart"], "selection.strategy must be one of"),
    "unknown loss": (["loss.type=ipo"], "loss.type must be one of"),
    "unknown generation backend": (["generation.backend=tgi"], "unknown generation backend"),
    "unknown reward backend": (["reward.backend=gpt4"], "unknown reward backend"),
    "missing model": (["policy.model=/no/such/model"], "does not exist"),
    "wrong reward count": (["reward.function={badcount}"], "returned 1 scores for 2 responses"),
    "nan reward": (["reward.function={nan}"], "non-finite"),
    "unknown key": (["loss.betaa=1"], "unknown config key"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_one_line_no_run(tmp_path, capsys, case):
    files = {
        "empty": write(tmp_path / "empty.jsonl", []),
        "noprompt": write(tmp_path / "np.jsonl", [{"id": "a", "text": "x"}]),
        "dupes": write(tmp_path / "d.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}]),
    }
    (tmp_path / "rw.py").write_text("def badcount(p, r):\n    return [0.5]\n\n"
                                    "def nan(p, r):\n    return [float('nan')] * len(r)\n")
    files["badcount"] = f"{tmp_path / 'rw.py'}:badcount"
    files["nan"] = f"{tmp_path / 'rw.py'}:nan"
    overrides, message = BAD[case]
    run = tmp_path / "run"
    code = run_cli(f"output_dir={run}", *[o.format(**files) for o in overrides])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not run.exists()


def test_resume_of_a_non_run(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "not an optune run directory" in capsys.readouterr().err


def test_cli_subprocess_reports_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-m", "optune.cli", "run", "selection.rho=2"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "optune run: error: selection.rho must be in (0, 1]; got 2.0"
    assert not (tmp_path / "runs").exists()
