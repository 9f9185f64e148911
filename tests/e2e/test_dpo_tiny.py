"""`optune dpo` on the tiny policy: the online loop's parts on a fixed preference set."""

import json

import pytest

from optune.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.slow
TINY = str(REPO / "configs" / "tiny.yaml")


def write_pairs(path, with_rewards: bool):
    rows = []
    for i in range(6):
        row = {"prompt": f"Say something about item {i}.", "chosen": f"a calm answer {i}", "rejected": f"NO!! {i}"}
        if with_rewards:
            # the data's label wins even where its reward says otherwise (pair 0)
            row.update(chosen_reward=0.1 if i == 0 else 0.9, rejected_reward=0.5)
        rows.append(row)
    rows.append({"prompt": "same", "chosen": "x", "rejected": "x"})  # identical: dropped
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("with_rewards", [True, False])
def test_offline_dpo_run(tmp_path, capsys, with_rewards):
    data = write_pairs(tmp_path / "prefs.jsonl", with_rewards)
    run = tmp_path / "run"
    assert main(["dpo", "-c", TINY, f"data.train={data}", f"output_dir={run}", "train.epochs=2"]) == 0
    out = capsys.readouterr().out
    assert "6 pairs" in out and "1 identical dropped" in out and "training 6 of" not in out
    assert "iter 0: reward chosen" in out and "regenerated" not in out and " gen " not in out  # nothing generated
    pairs = [json.loads(line) for line in (run / "iter_000" / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 6 and all(p["trained"] for p in pairs)
    if with_rewards:
        assert (pairs[0]["chosen_reward"], pairs[0]["rejected_reward"]) == (0.1, 0.5)
        assert pairs[0]["weight"] < 0.5  # wDPO down-weights a label its reward disagrees with
        assert not (run / "iter_000" / "score").exists()
    else:
        assert len(list((run / "iter_000" / "score").iterdir())) >= 1
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and "eval/heldout_reward" in metrics[0] and metrics[0]["pairs/trained"] == 6
    assert (run / "iter_000" / "checkpoint" / "model.safetensors").is_file()
    assert main(["dpo", "--resume", str(run)]) == 0  # finished: resume is a no-op


def test_a_cap_on_the_pairs_is_logged(tmp_path, capsys):
    data = write_pairs(tmp_path / "prefs.jsonl", True)
    run = tmp_path / "run"
    assert main(["dpo", "-c", TINY, f"data.train={data}", f"output_dir={run}", "data.max_prompts=4"]) == 0
    assert "optune dpo: training 4 of 6 pairs (data.max_prompts=4, a seeded random sample" in capsys.readouterr().out
    assert len((run / "iter_000" / "pairs.jsonl").read_text().splitlines()) == 4


def test_offline_dpo_needs_pairs(tmp_path, capsys):
    assert main(["dpo", "-c", TINY, "data.train=verifiable:train", f"output_dir={tmp_path / 'r'}"]) == 2
    assert "needs preference pairs" in capsys.readouterr().err
    one_sided = tmp_path / "bad.jsonl"
    one_sided.write_text(json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    assert main(["dpo", "-c", TINY, f"data.train={one_sided}", f"output_dir={tmp_path / 'r'}"]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
