"""End-to-end runs of `optune run` on the tiny random policy: the whole loop, invariants, bad input."""

import json
import os
import subprocess
import sys
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
    # the lock file exists only while a process runs in the directory; bench/ and export/ are made on demand
    optional = {"iter_[0-9][0-9][0-9]/train_state.pt", "bench/iter_[0-9][0-9][0-9].json", ".optune-lock",
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
    assert json.loads((run / "versions.json").read_text())["precision"] == "train.bf16=false as set"
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


def test_all_ties_stop_the_run_resumably(tmp_path, capsys):
    """A constant reward makes every pair a tie: each such iteration trains nothing and is a warning; the second
    in a row stops the run (exit 2, one line), which resumes once the reward is fixed. (Before issue 25 such a
    run finished silently, trained on nothing.)"""
    flat = tmp_path / "flat.py"
    flat.write_text("def reward(prompts, responses):\n    return [0.5] * len(responses)\n")
    run = tmp_path / "run"
    # the loop raises a UserError (2); optune.api reports a stop after the run directory exists as RunFailed (3)
    assert run_cli(f"output_dir={run}", f"reward.function={flat}:reward", "iterations=3") in (2, 3)
    metrics = rows(run / "metrics.jsonl")
    assert [m["pairs/trained"] for m in metrics] == [0, 0] and all("loss" not in m for m in metrics)
    out, err = capsys.readouterr()
    assert "no training" in out and out.count("warning: every pair tied (all 8 dropped") == 2
    assert "stopped after iteration 1: every pair tied in iterations 0 and 1" in err
    check_complete(run)
    flat.write_text("def reward(prompts, responses):\n    return [len(r) for r in responses]\n")
    assert main(["run", "--resume", str(run)]) == 0
    assert len(rows(run / "metrics.jsonl")) == 3


def test_rho1_optune_equals_full(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli(f"output_dir={a}", "selection.rho=1.0") == 0
    assert run_cli(f"output_dir={b}", "selection.strategy=full") == 0
    for t in (0, 1):
        assert (a / f"iter_{t:03d}" / "pairs.jsonl").read_text() == (b / f"iter_{t:03d}" / "pairs.jsonl").read_text()
    assert strip_times(rows(a / "metrics.jsonl")) == strip_times(rows(b / "metrics.jsonl"))


def test_fresh_prompts_each_iteration(tmp_path):
    """data.prompts_per_iteration=5 of 8 prompts: each iteration answers the next 5 of one seeded shuffle;
    prompts without stored responses are always generated, and rho applies to the rest only."""
    from optune.selection import iteration_pool

    run = tmp_path / "run"
    assert run_cli(f"output_dir={run}", "data.prompts_per_iteration=5", "iterations=3") == 0
    ids = [json.loads(line)["id"] for line in (REPO / "tests" / "data" / "prompts8.jsonl").read_text().splitlines()]
    metrics = rows(run / "metrics.jsonl")
    for t in range(3):
        it = run / f"iter_{t:03d}"
        used = [ids[i] for i in iteration_pool(8, 5, t, seed=0)]
        assert sorted(r["prompt_id"] for r in rows(it / "responses.jsonl")) == sorted(used)
        picked = set(json.loads((it / "selection.json").read_text())["prompt_ids"])
        before = {r["prompt_id"] for r in rows(run / f"iter_{t - 1:03d}" / "responses.jsonl")} if t else set()
        new, seen = set(used) - before, set(used) & before
        assert new <= picked and len(picked & seen) == -(-len(seen) // 2)  # ceil(rho * seen), rho = 0.5
        assert metrics[t]["selection/n_regenerated"] == len(picked) and metrics[t]["pairs/trained"] + \
            metrics[t]["pairs/ties"] == 5
    assert iteration_pool(8, 5, 0, 0) != iteration_pool(8, 5, 1, 0)


def test_an_unused_reward_function_is_named(tmp_path, capsys):
    """tiny.yaml sets reward.function; overriding the backend leaves it unused, which the run says (once it runs)."""
    assert run_cli(f"output_dir={tmp_path / 'run'}", "reward.backend=length", "iterations=1") == 0
    out = capsys.readouterr().out
    assert "note: reward.function (optune.tasks.toy:letter_fraction) is not used: reward.backend is length" in out


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


# Kills at every write point of a run and resumes: tests/e2e/test_crash.py (a sampled sweep in the normal tier,
# all of them in the slow one); mid-training resume from train_state.pt is among those points.


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
    "unknown generation backend": (["generation.backend=tgi"], "generation.backend must be one of"),
    "unknown reward backend": (["reward.backend=gpt4"], "reward.backend must be one of"),
    "missing model": (["policy.model=/no/such/model"], "does not exist"),
    "wrong reward count": (["reward.function={badcount}"], "returned 1 scores for 2 responses"),
    "nan reward": (["reward.function={nan}"], "non-finite"),
    "unknown key": (["loss.betaa=1"], "unknown config key"),
    "more prompts per iteration than loaded": (["data.prompts_per_iteration=9"],
                                               "data.prompts_per_iteration must be in [1, 8]"),
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
