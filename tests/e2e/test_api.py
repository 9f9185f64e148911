"""The Python API, Parquet prompt sets and `optune export` end to end on the tiny random policy.

One online run from a conversational Parquet prompt set with a Python reward function; its export read back by
`datasets` and trained on by `optune.dpo` (the round trip); resuming a run whose reward was a Python function;
and the quick-start example as a user runs it.
"""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import optune
from optune.cli import main
from tests.conftest import REPO

pytestmark = pytest.mark.slow
TINY = REPO / "configs" / "tiny.yaml"


def lowercase_share(prompts, responses):
    return [sum(c.islower() or c == " " for c in r) / max(len(r), 1) for r in responses]


def conversational_prompts(path):
    """prompts8 as a hub prompt set: a `messages` column, some with an earlier exchange and a reference answer."""
    rows = []
    for line in (REPO / "tests" / "data" / "prompts8.jsonl").read_text().splitlines():
        rec = json.loads(line)
        earlier = ([{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"}]
                   if rec["id"] < "p4" else [])
        rows.append({"prompt_id": rec["id"], "messages": earlier + [{"role": "user", "content": rec["prompt"]},
                                                                    {"role": "assistant", "content": "a reference"}]})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_api_run_export_and_dpo_round_trip(tmp_path, capsys):
    import datasets

    prompts = conversational_prompts(tmp_path / "prompts.parquet")
    result = optune.run(TINY, output_dir=str(tmp_path / "run"), data={"train": prompts, "heldout": prompts},
                        reward={"function": lowercase_share})
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [m.to_log() for m in result.metrics] == [json.loads(line) for line in lines] and len(result.metrics) == 2
    assert (result.checkpoint / "model.safetensors").is_file()
    assert ("function: <python callable tests.e2e.test_api.lowercase_share>"
            in (result.run_dir / "config.yaml").read_text())
    stored = [json.loads(line) for line in (result.run_dir / "prompts.jsonl").read_text().splitlines()]
    assert stored[0] == {"id": "p0", "prompt": "Say hello.", "history": [{"role": "user", "content": "Hi."},
                                                                         {"role": "assistant", "content": "Hello!"}]}

    out = capsys.readouterr().out
    assert "| 2 iterations" in out and "-0.0000" not in out
    assert out.rstrip().splitlines()[-1] == (f"final policy: {result.checkpoint} (model card: README.md there) | "
                                             f"next: optune report {result.run_dir}, optune export {result.run_dir}")
    card = result.checkpoint / "README.md"  # written as the run ended, before any export
    assert 'model="iter_001/checkpoint")' in card.read_text() and str(result.run_dir) not in card.read_text()

    exported = optune.export(result.run_dir, tmp_path / "prefs")
    trained = [m.pairs_trained for m in result.metrics]
    assert list(exported.pairs_per_iteration.values()) == trained
    rows = list(datasets.load_dataset("parquet", data_files=str(exported.parquet), split="train"))
    assert len(rows) == sum(trained) and all(r["score_chosen"] >= r["score_rejected"] for r in rows)
    first = next(r for r in rows if r["prompt_id"] == "p0")
    assert first["prompt"] == stored[0]["history"] + [{"role": "user", "content": "Say hello."}]
    assert "## Held-out curve" in exported.model_card.read_text()

    again = optune.dpo(TINY, output_dir=str(tmp_path / "dpo"), data={"train": str(exported.parquet),
                                                                      "heldout": prompts, "max_prompts": None})
    assert again.metrics[0].pairs_trained == sum(trained) == again.metrics[0]["pairs/trained"]
    assert not (again.run_dir / "iter_000" / "score").exists()  # the exported scores were used, not re-scored
    assert f"{sum(trained)} pairs from {exported.parquet}" in capsys.readouterr().out

    # a finished run resumes to nothing, from the CLI (it needs no reward) and from Python; the unfinished case,
    # where the CLI cannot go on without the Python function, is in tests/unit/test_api.py
    card.unlink()  # as a kill after summary.json and before the card leaves it: the resume writes it
    assert main(["run", "--resume", str(result.run_dir)]) == 0
    assert "nothing left to do" in capsys.readouterr().out
    assert "| all |" not in card.read_text()  # the run's own card, not export's
    assert optune.run(resume=result.run_dir, reward={"function": lowercase_share}).metrics == result.metrics


def test_quickstart_example(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, str(REPO / "examples" / "api_quickstart.py"), "--out", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "iteration 1: regenerated 4 prompts" in proc.stdout
    assert "preference pairs in TRL's format" in proc.stdout
    assert (tmp_path / "preferences" / "preferences.parquet").is_file()
    assert (tmp_path / "run" / "iter_001" / "checkpoint" / "README.md").is_file()
