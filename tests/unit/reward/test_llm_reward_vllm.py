"""The `llm` reward backend against a real OpenAI-compatible server: the LLM judge's vLLM server on loopback.

The server is the session's `vllm_server` (tests/unit/conftest.py, the tiny random Llama that the judge
tests use, demanding an API key). Constrained decoding of the rating line gives well-formed ratings; a
free-form reply is read as a rating or stops the run with the reply shown, never scores 0 (which of the two
depends on what the model samples, so the test accepts both; chosen replies are test_llm_reward.py's). A
whole `optune run` trains on the ratings, and the key appears in neither the run directory nor the cache.
"""

from __future__ import annotations

import json
import re

import pytest

from optune.cli import main as cli_main
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.backends import checked_score, make_reward
from optune.reward.config import RewardConfig
from tests.conftest import REPO
from tests.unit.conftest import VLLM_KEY as KEY
from tests.unit.conftest import VLLM_KEY_ENV as KEY_ENV

pytestmark = pytest.mark.slow

RECORDS = [Prompt(f"p{i}", f"Name a colour, {i}.") for i in range(3)]
RESPONSES = ["Blue.", "Chair.", "Green, like grass."]


def rater(url, cache, **kw):
    settings = {"max_tokens": 8, "concurrency": 3, "timeout_s": 60, **kw}
    return make_reward(RewardConfig(backend="llm", url=url, model="tiny-judge", api_key_env=KEY_ENV,
                                    cache=str(cache), **settings))


def test_constrained_ratings_are_read_and_cached(vllm_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    scores = checked_score(rater(vllm_server, tmp_path / "c.jsonl", constrained="structured_outputs"),
                           RECORDS, RESPONSES)
    assert all(s in {float(i) for i in range(1, 11)} for s in scores), scores
    # Same cache, dead endpoint, no retries: every rating comes from disk.
    again = rater("http://127.0.0.1:9/v1", tmp_path / "c.jsonl", constrained="structured_outputs",
                  max_retries=0).score(RECORDS, RESPONSES)
    assert again == scores
    assert KEY not in (tmp_path / "c.jsonl").read_text()


def test_free_form_replies_are_read_or_stop_with_the_reply(vllm_server, tmp_path, monkeypatch):
    """Unconstrained, what the random model samples decides which way it goes (a reply once parsed as a rating on
    another CPU), so both are right: ratings in 1-10, or the run stops showing the reply; never a guessed or zero
    score. Replies chosen by the test, garbage included, are in test_llm_reward.py's scripted-server tests."""
    monkeypatch.setenv(KEY_ENV, KEY)
    try:
        scores = checked_score(rater(vllm_server, tmp_path / "c.jsonl", parse_retries=1, max_tokens=16), RECORDS,
                               RESPONSES)
    except UserError as err:
        assert re.match(r"reward LLM at \S+ gave no 1-10 rating for prompt 'p\d' in 2 tries \(last reply: ", str(err))
    else:
        assert all(1.0 <= s <= 10.0 for s in scores), scores
    assert (tmp_path / "c.jsonl").read_text().strip()  # real replies, cached


def test_run_trains_on_llm_ratings_without_leaking_the_key(vllm_server, tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    run, cache = tmp_path / "run", tmp_path / "ratings.jsonl"
    argv = ["run", "-c", str(REPO / "configs" / "tiny.yaml"), f"output_dir={run}", "reward.backend=llm",
            f"reward.url={vllm_server}", "reward.model=tiny-judge", f"reward.api_key_env={KEY_ENV}",
            "reward.constrained=structured_outputs", "reward.max_tokens=8", "reward.concurrency=8",
            f"reward.cache={cache}", "loss.beta2=1.0", "loss.drop_ties=false"]  # equal ratings may not stop it
    assert cli_main(argv) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    rows = [json.loads(line) for line in (run / "iter_000" / "responses.jsonl").read_text().splitlines()]
    assert all(s["reward"] in {float(i) for i in range(1, 11)} for r in rows for s in r["responses"])
    assert len(cache.read_text().splitlines()) >= 16  # 8 prompts x 2 responses, at least
    for path in [cache, *run.rglob("*")]:
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
