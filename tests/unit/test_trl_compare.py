"""The pure helpers of benchmarks/trl_compare.py (the benchmark itself is run on demand, not in tests)."""

import importlib.util
from pathlib import Path

import pytest

from optune.config.run import RunConfig, load_config

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "trl_compare.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("trl_compare", _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(pid, a, b):
    return {"prompt_id": pid, "responses": [{"ids": [1, 2], "reward": a}, {"ids": [3], "reward": b}]}


def test_pairs_take_the_higher_reward_as_chosen(bench):
    rows = [_row("p0", 0.2, 0.9), _row("p1", 0.7, 0.1), _row("p2", 0.5, 0.5)]
    pairs = bench.pairs_from_responses(rows, {"p0": [9], "p1": [8, 8], "p2": [7]}, n=3)
    assert [p["chosen_ids"] for p in pairs] == [[3], [1, 2], [1, 2]]  # a tie keeps the first as chosen
    assert [p["rejected_reward"] for p in pairs] == [0.2, 0.1, 0.5]
    assert pairs[1]["prompt_ids"] == [8, 8]


def test_pairs_are_the_first_n_prompts(bench):
    rows = [_row(f"p{i}", 0.0, 1.0) for i in range(5)]
    pairs = bench.pairs_from_responses(rows, {f"p{i}": [i] for i in range(5)}, n=2)
    assert [p["prompt_ids"] for p in pairs] == [[0], [1]]


def test_pair_tokens_count_the_prompt_twice(bench):
    pairs = [{"prompt_ids": [1, 2, 3], "chosen_ids": [4, 5], "rejected_ids": [6]}]
    assert bench.pair_tokens(pairs) == 3 + 2 + 3 + 1


def test_optune_curve_counts_responses_generated_so_far(bench):
    metrics = [{"iteration": 0, "selection/n_regenerated": 8, "eval/heldout_reward": 0.5,
                "eval/heldout_reward_start": 0.4},
               {"iteration": 1, "selection/n_regenerated": 4, "eval/heldout_reward": 0.6}]
    curve = bench.optune_curve(metrics)
    assert [(c["responses"], c["heldout"]) for c in curve] == [(0, 0.4), (16, 0.5), (24, 0.6)]


def test_mirror_notes_name_what_trl_cannot_match(bench):
    notes = " ".join(bench.mirror_notes(RunConfig()))  # the embedded default: wDPO, 2 epochs, ties dropped
    assert "wdpo" in notes and "2 times" in notes and "ties" in notes and "pi_0" in notes
    matched = " ".join(bench.mirror_notes(load_config(None, list(bench.MATCHED))))
    assert "wdpo" not in matched and "times per iteration" not in matched and "ties" not in matched
    assert "micro-batch" in matched  # generation batching always differs


def test_without_trl_one_line_names_the_extra(bench, tmp_path, monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "trl" else real(name, *a))
    monkeypatch.setattr("sys.argv", ["trl_compare.py", "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as exit_:
        bench.main()
    assert exit_.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err.strip().splitlines() == [
        "benchmarks/trl_compare.py needs TRL: pip install -e '.[trl-bench]' (the bench extra is lm-eval, "
        "for optune bench)"]
