"""`optune bench` wiring, offline: a local lm-eval task over a JSONL file, on a tiny checkpoint.

The harness's accuracy is checked against log-likelihoods computed here with transformers, so the
test shows that lm-eval really scored our checkpoint on our task (not just that it ran).
"""

from __future__ import annotations

import json
import shutil

import pytest

from optune.cli import main as cli_main
from optune.errors import UserError
from optune.eval.bench import PAPER_TASKS, BenchTask, parse_tasks, resolve_checkpoint

QUESTIONS = [(1, 2), (3, 4), (2, 2), (5, 1), (6, 3), (7, 1), (4, 4), (9, 0)]
TASK_YAML = """task: optune_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def test_paper_settings_are_table5():
    assert {(t.task, t.num_fewshot, t.metric) for t in PAPER_TASKS} == {
        ("truthfulqa_mc2", 0, "acc,none"), ("gsm8k", 5, "exact_match,strict-match"),
        ("hellaswag", 0, "acc_norm,none"), ("mmlu", 0, "acc,none")}
    assert parse_tasks("paper") == list(PAPER_TASKS)


def test_parse_tasks():
    assert parse_tasks("a, b:5, c:0:acc_norm, gsm8k:5:exact_match:strict-match") == [
        BenchTask("a", 0, "acc,none"), BenchTask("b", 5, "acc,none"), BenchTask("c", 0, "acc_norm,none"),
        BenchTask("gsm8k", 5, "exact_match,strict-match")]
    for bad in ("a:x", "", "a,a:1", "a:1:b:c:d", ":1"):
        with pytest.raises(UserError):
            parse_tasks(bad)


def test_resolve_checkpoint(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    for t in (0, 2):
        shutil.copytree(tiny_model_dir, run / f"iter_{t:03d}" / "checkpoint")
    assert resolve_checkpoint(run) == (run / "iter_002" / "checkpoint", run / "bench" / "iter_002.json")
    assert resolve_checkpoint(run / "iter_000" / "checkpoint") == (run / "iter_000" / "checkpoint",
                                                                  run / "bench" / "iter_000.json")
    assert resolve_checkpoint(tiny_model_dir) == (tiny_model_dir, None)
    with pytest.raises(UserError, match="neither a model checkpoint"):
        resolve_checkpoint(tmp_path)


def _expected_accuracy(model_dir, rows) -> float:
    """Accuracy by summed log-likelihood of " choice" after the prompt, as lm-eval defines it."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    correct = 0
    for row in rows:
        ctx = f"Question: {row['question']}\nAnswer:"
        ctx_ids = tok(ctx, add_special_tokens=False).input_ids
        scores = []
        for choice in row["choices"]:
            ids = tok(ctx + " " + choice, add_special_tokens=False).input_ids
            with torch.no_grad():
                logp = model(torch.tensor([ids])).logits[0].log_softmax(-1)
            scores.append(sum(logp[i - 1, ids[i]].item() for i in range(len(ctx_ids), len(ids))))
        correct += int(max(range(len(scores)), key=scores.__getitem__) == row["answer"])
    return correct / len(rows)


@pytest.mark.slow
def test_bench_local_task_on_run_dir(tmp_path, tiny_model_dir, monkeypatch, capsys):
    pytest.importorskip("lm_eval", reason="lm-eval not installed (pip install 'optune[bench]')")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    rows = [{"question": f"What is {a} plus {b}?", "choices": [str(a + b), str(a + b + 1), str(a * b + 7)],
             "answer": i % 3} for i, (a, b) in enumerate(QUESTIONS)]
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_mc.yaml").write_text(TASK_YAML.format(data=data))
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run / "iter_001" / "checkpoint")
    assert cli_main(["bench", str(run), "--tasks", "optune_tiny_mc:0:acc", "--include-path", str(tasks)]) == 0
    result = json.loads((run / "bench" / "iter_001.json").read_text())
    assert result["results"]["optune_tiny_mc"]["sample_len"] == len(rows)
    expected = _expected_accuracy(tiny_model_dir, rows)
    assert result["scores"]["optune_tiny_mc"] == pytest.approx(100 * expected)
    assert result["settings"]["tasks"] == [{"task": "optune_tiny_mc", "num_fewshot": 0, "metric": "acc,none"}]
    assert "optune_tiny_mc" in capsys.readouterr().out
    # an unknown task is one clear line, not a traceback
    assert cli_main(["bench", str(run), "--tasks", "no_such_task_xyz", "--include-path", str(tasks)]) == 2
    assert "unknown lm-eval task(s): no_such_task_xyz" in capsys.readouterr().err
