"""`optune run` / `optune dpo` on bad input and on directories it must not touch: one line on stderr, exit 2,
nothing created, and no model loaded (the checks run first)."""

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from optune.cli import main
from optune.config.run import load_config, to_dict
from tests.conftest import REPO

TINY = str(REPO / "configs" / "tiny.yaml")


@pytest.fixture(autouse=True)
def no_model_loads(monkeypatch):
    """Every case here must fail (or finish) before a policy is resolved or loaded."""
    import optune.models.policy
    import optune.runner.prepare

    def forbidden(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(optune.runner.prepare, "resolve_policy", forbidden)
    monkeypatch.setattr(optune.models.policy, "load_model", forbidden)


def one_line_error(capsys, argv: list[str], message: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    return err


def fake_run(root, finished: int = 0):
    """A run directory as `optune run` leaves it, with `finished` iterations done (no model needed)."""
    root.mkdir()
    (root / ".optune-run").write_text("optune run directory\n")
    (root / "config.yaml").write_text(yaml.safe_dump(to_dict(load_config(TINY, [f"output_dir={root}"]))))
    for t in range(finished):
        (root / f"iter_{t:03d}").mkdir()
        (root / f"iter_{t:03d}" / "metrics.json").write_text(json.dumps({"iteration": t, "time/elapsed_s": 1.0}))
    return root


BAD = {
    "output_dir is a file": (["output_dir={file}"], "is a file, not a directory"),
    "output_dir under a file": (["output_dir={file}/sub/run"], "afile is a file, not a directory"),
    "output_dir not writable": (["output_dir=/sys/optune-test-run"], "cannot write to /sys"),
    "output_dir holds a run": (["output_dir={run}"], "already holds an optune run; resume it with --resume"),
    "output_dir not empty": (["output_dir={full}"], "already exists and is not empty"),
    "unknown generation backend": (["output_dir={new}", "generation.backend=tgi"],
                                   "generation.backend must be one of transformers, vllm; got 'tgi'"),
    "missing reward model": (["output_dir={new}", "reward.backend=hf", "reward.model={tmp}/no-rm"],
                             "no-rm: no such directory"),
    "reward module fails to import": (["output_dir={new}", "reward.function={tmp}/broken.py:f"],
                                      "importing {tmp}/broken.py raised ZeroDivisionError: division by zero"),
    "reward function raises": (["output_dir={new}", "reward.function={tmp}/rw.py:boom"],
                               "reward function {tmp}/rw.py:boom raised ValueError: no reward for you"),
    "reward function returns a number": (["output_dir={new}", "reward.function={tmp}/rw.py:scalar"],
                                         "returned float, not a list of numbers"),
    "missing init_from": (["output_dir={new}", "init_from={tmp}/nothing"], "does not exist"),
    "policy with a broken config.json": (["output_dir={new}", "policy.model={tmp}/policy"],
                                         "policy.model {tmp}/policy: {tmp}/policy/config.json is damaged (not valid "
                                         "JSON at line 1); restore it or point to another model"),
    "reward model with a broken config.json": (["output_dir={new}", "reward.backend=hf", "reward.model={tmp}/policy"],
                                               "reward.model {tmp}/policy: {tmp}/policy/config.json is damaged"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_first_with_one_line(tmp_path, capsys, case):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    fake_run(tmp_path / "run", finished=1)
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    (tmp_path / "rw.py").write_text("def boom(p, r):\n    raise ValueError('no reward\\nfor you')\n\n"
                                    "def scalar(p, r):\n    return 0.5\n")
    (tmp_path / "policy").mkdir()
    (tmp_path / "policy" / "config.json").write_text('{"model_type": "lla')  # cut short
    before = sorted(p.name for p in tmp_path.iterdir())
    overrides, message = BAD[case]
    paths = {"file": tmp_path / "afile", "run": tmp_path / "run", "full": tmp_path / "full",
             "new": tmp_path / "new", "tmp": tmp_path}
    one_line_error(capsys, ["run", "-c", TINY, *[o.format(**paths) for o in overrides]], message.format(**paths))
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "something was created"


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
def test_unavailable_device_fails_before_the_directory_is_made(tmp_path, capsys):
    one_line_error(capsys, ["run", "-c", TINY, f"output_dir={tmp_path / 'r'}", "policy.device=cuda:0"],
                   "policy.device cuda:0: CUDA is not available here")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cache, message", [
    ("afile", "$OPTUNE_CACHE {tmp}/afile: {tmp}/afile is a file, not a folder; policy.model tiny:llama is built "
              "there once; set OPTUNE_CACHE to a writable folder"),
    ("afile/cache", "$OPTUNE_CACHE {tmp}/afile/cache: {tmp}/afile is a file, not a folder"),
    ("/sys/optune-cache", "$OPTUNE_CACHE /sys/optune-cache: cannot write to /sys ("),
])
def test_an_unusable_cache_fails_before_anything_loads(tmp_path, capsys, monkeypatch, cache, message):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("OPTUNE_CACHE", cache if cache.startswith("/") else str(tmp_path / cache))
    one_line_error(capsys, ["run", "-c", TINY, f"output_dir={tmp_path / 'r'}"], message.format(tmp=tmp_path))
    assert not (tmp_path / "r").exists()


def test_malformed_yaml_names_line_and_column(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("iterations: 2\npolicy:\n  model: tiny:llama\n  dtype: [float32\nseed: 1\n")
    one_line_error(capsys, ["run", "-c", str(bad)], f"config file {bad}: line 5, column 5:")


def test_debug_shows_the_traceback_of_a_user_reward_function(tmp_path, capsys, monkeypatch):
    (tmp_path / "rw.py").write_text("def boom(p, r):\n    raise ValueError('no reward')\n")
    argv = ["run", "-c", TINY, f"output_dir={tmp_path / 'r'}", f"reward.function={tmp_path}/rw.py:boom"]
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "rw.py\", line 2, in boom" in err
    assert err.strip().splitlines()[-1] == f"optune run: error: reward function {tmp_path}/rw.py:boom raised " \
                                           "ValueError: no reward"
    monkeypatch.setenv("OPTUNE_DEBUG", "1")
    assert main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


def test_resuming_a_finished_run_says_so_and_rebuilds_its_metrics(tmp_path, capsys):
    run = fake_run(tmp_path / "run", finished=2)  # killed before metrics.jsonl was written
    assert main(["run", "--resume", str(run)]) == 0
    assert "already finished its 2 iterations; nothing left to do" in capsys.readouterr().out
    assert [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert not (run / ".optune-lock").exists()


def test_second_resume_of_a_running_directory_fails_naming_the_holder(tmp_path, capsys):
    run = fake_run(tmp_path / "run", finished=1)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    code = ("import sys, time; from optune.store import RunStore; RunStore.open_existing(sys.argv[1]); "
            "print('held', flush=True); time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for command in ("run", "dpo"):
            one_line_error(capsys, [command, "--resume", str(run)],
                           f"run directory {run} is in use by another optune process (PID {holder.pid})")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_dpo_checks_the_output_dir_before_reading_the_data(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    one_line_error(capsys, ["dpo", "-c", TINY, f"data.train={tmp_path / 'missing.jsonl'}",
                            f"output_dir={tmp_path / 'afile'}"], "is a file, not a directory")


def test_a_tracker_that_is_not_installed_is_refused_before_the_directory(tmp_path, capsys, monkeypatch):
    import optune.runner.tracking

    monkeypatch.setitem(optune.runner.tracking.TRACKERS, "wandb", ("optune_test_not_installed",))
    one_line_error(capsys, ["run", "-c", TINY, f"output_dir={tmp_path / 'r'}", "report_to=[wandb]"],
                   "report_to wandb: the package optune_test_not_installed is not installed")
    one_line_error(capsys, ["run", "-c", TINY, f"output_dir={tmp_path / 'r'}", "report_to=[wandbb]"],
                   "report_to 'wandbb': not a tracker accelerate knows")
    assert not list(tmp_path.iterdir())


def test_print_config_prints_the_resolved_yaml_and_loads_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--print-config", "-c", TINY, "beta=0.3", "selection.rho=1"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == to_dict(load_config(TINY, ["loss.beta1=0.3", "selection.rho=1"]))
    assert printed["data"]["train"] == str(REPO / "tests" / "data" / "prompts8.jsonl")
    assert not list(tmp_path.iterdir()), "print-config created something"
    assert main(["dpo", "--print-config", "data.train=pairs.jsonl"]) == 0  # optune dpo's own defaults
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["iterations"] == 1 and printed["data"]["max_prompts"] is None
    assert printed["output_dir"].startswith("runs/") and "offline" in printed["output_dir"]
    one_line_error(capsys, ["run", "--print-config", "selction.rho=1"], "did you mean selection.rho?")


def test_print_config_of_a_resume_shows_its_deployment_overrides(tmp_path, capsys):
    run = fake_run(tmp_path / "run", finished=1)
    assert main(["run", "--resume", str(run), "--print-config", "policy.device=cpu", "report_to=[]"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["policy"]["device"] == "cpu" and printed["output_dir"] == str(run)
    assert not (run / ".optune-lock").exists()
    one_line_error(capsys, ["run", "--resume", str(run), "selection.rho=1"],
                   "selection.rho would change what the run computes; only deployment-only keys may change")
    one_line_error(capsys, ["run", "--resume", str(run), "-c", TINY], "--resume takes the run's own config")


def test_help_config_lists_the_trl_names(capsys):
    assert main(["run", "--help-config"]) == 0
    out = capsys.readouterr().out
    assert "selection.rho = 0.5" in out and "  beta -> loss.beta1" in out and "  optim -> train.optimizer" in out
