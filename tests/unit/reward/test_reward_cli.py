"""`optune reward ...` end to end on tiny inputs: bad input is one line and exit 2."""

from __future__ import annotations

import json

import pytest

from optune.cli import main
from optune.prompt import Prompt
from tests.unit.reward.conftest import make_bert


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_train_then_eval(tiny_bert, pair_files, tmp_path, capsys):
    train, heldout = pair_files
    out = tmp_path / "rm"
    code, stdout, _ = _run(capsys, [
        "reward", "train", f"backbone={tiny_bert}", f"train_files=[{train}]", f"eval_files=[{heldout}]",
        f"output_dir={out}", "max_steps=3", "max_length=32", "stats_max_pairs=8",
    ])
    assert code == 0 and json.loads(stdout)["steps"] == 3
    code, stdout, err = _run(capsys, ["reward", "train", "--resume", str(out)])
    assert code == 0 and "finished already" in err and json.loads(stdout)["steps"] == 3
    report = tmp_path / "eval.json"
    code, stdout, _ = _run(capsys, ["reward", "eval", "--model", str(out), "--data", str(heldout),
                                    "--output", str(report)])
    assert code == 0 and "accuracy" in stdout
    assert json.loads(report.read_text())["pairs"] == 16


def test_bad_inputs_are_one_line_errors(pair_files, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_sided = tmp_path / "one.jsonl"
    one_sided.write_text('{"prompt": "p", "rejected": "r"}\n')
    two = make_bert(tmp_path / "two", num_labels=2)
    capsys.readouterr()  # drop the fixture's own save progress output
    cases = [
        (["reward", "train", f"train_files=[{pair_files[0]}]", f"backbone={two}", f"output_dir={tmp_path / 'o'}"],
         "2 outputs"),
        (["reward", "eval", "--model", str(two), "--data", str(pair_files[1])], "2 outputs"),
        (["reward", "eval", "--model", str(two), "--data", str(empty)], "no usable preference pairs"),
        (["reward", "eval", "--model", str(tmp_path / "none"), "--data", str(pair_files[1])], "not found"),
        (["reward", "train", "--resume", str(tmp_path), "lr=1"], "--resume takes the config"),
        (["reward", "train", "bogus=1"], "unknown config key"),
        (["reward", "train", "backbone=/nonexistent", f"train_files=[{pair_files[0]}]", f"output_dir={tmp_path / 'o'}"],
         "backbone /nonexistent: no such path"),
        (["reward", "train", f"backbone={two}", f"train_files=[{pair_files[0]}]", f"output_dir={empty}"],
         "is a file, not a directory"),
        (["reward", "train", f"backbone={two}", f"train_files=[{pair_files[0]}]", f"output_dir={empty}/o"],
         "empty.jsonl is a file, not a directory"),
        (["reward", "train", "optimizer=adam"], "optimizer must be one of rmsprop, adamw, sgd; got 'adam'"),
    ]
    for argv, message in cases:
        code, _, err = _run(capsys, argv)
        assert code == 2, argv
        last = err.strip().splitlines()[-1]
        assert last.startswith("optune reward: error:") and message in last and "Traceback" not in err, err
    assert not (tmp_path / "o").exists(), "bad input left an output directory behind"


def test_empty_and_one_sided_data_files(tiny_bert, tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_sided = tmp_path / "one.jsonl"
    one_sided.write_text('{"prompt": "p", "rejected": "r"}\n')
    for path, message in [(empty, "no usable preference pairs"),
                          (one_sided, "one.jsonl:1: record has 'rejected' but no 'chosen'")]:
        code, _, err = _run(capsys, ["reward", "train", f"backbone={tiny_bert}", f"train_files=[{path}]",
                                     f"output_dir={tmp_path / 'o'}"])
        last = err.strip().splitlines()[-1]
        assert code == 2 and last.startswith("optune reward: error:") and message in last, err
        assert "Traceback" not in err
        assert not (tmp_path / "o").exists(), "bad input left an output directory behind"


def test_help_config_lists_every_key(capsys):
    code, stdout, _ = _run(capsys, ["reward", "train", "--help-config"])
    assert code == 0 and "train_files = []" in stdout and "stats_max_pairs = 1000" in stdout


def test_train_takes_c_like_run_and_dpo(tmp_path, capsys):
    """`optune reward train -c FILE`, as the README writes it, not argparse's "unrecognized arguments: -c"."""
    code, _, err = _run(capsys, ["reward", "train", "-c", str(tmp_path / "missing.yaml")])
    assert code == 2 and "missing.yaml" in err and "unrecognized" not in err


def test_serve_bad_inputs_are_one_line_errors(tiny_bert, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPTUNE_TEST_UNSET_KEY", raising=False)
    for argv, match in [
        (["--model", str(tmp_path / "missing")], "reward model directory not found"),
        (["--model", str(tiny_bert), "--port", "70000"], "--port must be in 0..65535"),
        (["--model", str(tiny_bert), "--api-key-env", "OPTUNE_TEST_UNSET_KEY"],
         "OPTUNE_TEST_UNSET_KEY, which is not set"),
    ]:
        code, _, err = _run(capsys, ["reward", "serve", *argv])
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_serve_command_answers_the_remote_backend(tiny_bert, tmp_path):
    """`optune reward serve` as its own process, on a free loopback port, then stopped."""
    import os
    import signal
    import subprocess
    import sys

    from optune.reward.backends import HFReward, make_reward
    from optune.reward.config import RewardConfig
    from tests.conftest import REPO, interruptible

    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "optune", "reward", "serve", "--model", str(tiny_bert),
                                 "--port", "0"], stdout=subprocess.PIPE, stderr=err, text=True, env=env,
                                preexec_fn=interruptible)
    try:
        line = proc.stdout.readline()  # printed once the socket listens
        assert line.startswith("serving "), f"{line!r}; stderr: {log.read_text()[-2000:]}"
        url = line.split(" at ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        records = [Prompt("a", "please help me"), Prompt("b", "what is this ?")]
        responses = ["good great answer", "bad"]
        remote = make_reward(RewardConfig(backend="remote", url=url, route="optune")).score(records, responses)
        local = HFReward(RewardConfig(backend="hf", model=str(tiny_bert))).score(records, responses)
        assert remote == pytest.approx(local, abs=1e-6)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
