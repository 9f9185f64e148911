"""LLM judge client: caching, retries, failure behaviour, key handling.

Failures (429, 401, 500, a dead port, garbage) are injected by a scripted HTTP endpoint on
loopback (`server_factory`, tests/unit/conftest.py), because a real server cannot be made to rate-limit on demand;
the judge against a real OpenAI-compatible server (vLLM) is in test_llm_judge_vllm.py.
"""

from __future__ import annotations

import json
import socket

import pytest

from optune.eval.llm_judge import JudgeError, LLMJudge, LLMJudgeConfig
from optune.prompt import Prompt
from optune.store.judge_cache import JudgmentCache

RECORDS = [Prompt(f"p{i}", f"question {i}") for i in range(3)]
A = [f"good answer {i}" for i in range(3)]
B = [f"bad answer {i}" for i in range(3)]


def completion(text):
    return 200, {"choices": [{"message": {"role": "assistant", "content": text}}]}, {}


def prefers_good(n, body):
    """A judge that gives 9 to the answer containing 'good' and 4 to the other."""
    user = body["messages"][1]["content"]
    first = user.split("[The Start of Assistant 1's Answer]\n")[1].split("\n")[0]
    return completion("9 4\nfirst is better" if "good" in first else "4 9\nsecond is better")


def make_judge(url, tmp_path, sleeps=None, **kw):
    cfg = LLMJudgeConfig(base_url=url, model="judge-x", api_key_env="OPTUNE_TEST_JUDGE_KEY", backoff_s=0.01, **kw)
    sleep = (lambda s: sleeps.append(s)) if sleeps is not None else (lambda s: None)
    return LLMJudge(cfg, JudgmentCache(tmp_path / "cache.jsonl"), sleep=sleep)


def test_both_orders_judged_and_cached(server_factory, tmp_path):
    srv = server_factory(prefers_good)
    out = make_judge(srv.url, tmp_path).compare(RECORDS, A, B)
    assert [(j["first"], j["second"]) for j in out] == [("win", "win")] * 3
    assert out[0]["scores_first"] == [9.0, 4.0] and out[0]["scores_second"] == [4.0, 9.0]
    assert len(srv.requests) == 6  # 3 prompts x 2 orders
    assert srv.requests[0]["body"]["model"] == "judge-x" and srv.requests[0]["body"]["temperature"] == 0.0
    again = make_judge(srv.url, tmp_path).compare(RECORDS, A, B)  # fresh judge, same cache file
    assert again == out and len(srv.requests) == 6  # nothing asked twice


def test_swapped_answers_flip_outcome(server_factory, tmp_path):
    srv = server_factory(prefers_good)
    out = make_judge(srv.url, tmp_path).compare(RECORDS, B, A)
    assert [(j["first"], j["second"]) for j in out] == [("lose", "lose")] * 3


def test_rate_limit_retried_with_retry_after(server_factory, tmp_path):
    def script(n, body):
        return (429, {"error": "slow down"}, {"Retry-After": "2"}) if n < 2 else prefers_good(n, body)

    srv = server_factory(script)
    sleeps = []
    out = make_judge(srv.url, tmp_path, sleeps, concurrency=1).compare(RECORDS[:1], A[:1], B[:1])
    assert out[0]["first"] == "win"
    assert sleeps == [2.0, 2.0]  # Retry-After wins over the 0.01 s backoff


def test_persistent_rate_limit_keeps_partial_results_and_resumes(server_factory, tmp_path):
    srv = server_factory(lambda n, body: prefers_good(n, body) if n < 3 else (429, {"error": "quota"}, {}))
    sleeps = []
    with pytest.raises(JudgeError, match=r"rate limited \(HTTP 429\).*gave up after 3 attempts\).*3 of 6"):
        make_judge(srv.url, tmp_path, sleeps, concurrency=1, max_retries=2).compare(RECORDS, A, B)
    assert sleeps == [0.01, 0.02]  # exponential backoff; no request starts after the failure
    assert len(JudgmentCache(tmp_path / "cache.jsonl")) == 3
    healthy = server_factory(prefers_good)
    out = make_judge(healthy.url, tmp_path).compare(RECORDS, A, B)
    assert len(healthy.requests) == 3  # only the missing half is asked
    assert all(j["first"] == "win" for j in out)


def test_wrong_key_fails_at_once_without_leaking_it(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTUNE_TEST_JUDGE_KEY", "sk-very-secret")
    srv = server_factory(lambda n, body: (401, {"error": "invalid api key"}, {}))
    with pytest.raises(JudgeError) as info:
        make_judge(srv.url, tmp_path, concurrency=1).compare(RECORDS[:1], A[:1], B[:1])
    message = str(info.value)
    assert "HTTP 401" in message and "OPTUNE_TEST_JUDGE_KEY" in message and "sk-very-secret" not in message
    assert srv.requests[0]["auth"] == "Bearer sk-very-secret"
    assert len(srv.requests) <= 2  # no retries (two orders may be in flight at once)


def test_key_never_written_to_cache(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTUNE_TEST_JUDGE_KEY", "sk-very-secret")
    srv = server_factory(prefers_good)
    judge = make_judge(srv.url, tmp_path)
    judge.compare(RECORDS, A, B)
    assert "sk-very-secret" not in (tmp_path / "cache.jsonl").read_text()
    assert "sk-very-secret" not in json.dumps(judge.config.public())


def test_unreachable_endpoint_retries_then_clear_error(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    sleeps = []
    with pytest.raises(JudgeError, match=r"cannot reach judge at http://127.0.0.1:\d+/v1/chat/completions.*"
                                         r"gave up after 3 attempts\); 0 of 2"):
        make_judge(f"http://127.0.0.1:{port}/v1", tmp_path, sleeps, concurrency=1,
                   max_retries=2).compare(RECORDS[:1], A[:1], B[:1])
    assert len(sleeps) == 2


def test_server_errors_are_retried(server_factory, tmp_path):
    srv = server_factory(lambda n, body: (503, b"overloaded", {}) if n == 0 else prefers_good(n, body))
    out = make_judge(srv.url, tmp_path, concurrency=1).compare(RECORDS[:1], A[:1], B[:1])
    assert out[0]["first"] == "win" and len(srv.requests) == 3


def test_garbage_replies_are_counted_not_guessed(server_factory, tmp_path):
    srv = server_factory(lambda n, body: completion("I think both are fine overall."))
    out = make_judge(srv.url, tmp_path).compare(RECORDS, A, B)
    assert all(j["first"] is None and j["second"] is None for j in out)
    assert out[0]["reply_first"] == "I think both are fine overall."


def test_not_a_chat_completion_is_a_clear_error(server_factory, tmp_path):
    srv = server_factory(lambda n, body: (200, b"<html>proxy login</html>", {}))
    with pytest.raises(JudgeError, match="not a chat completion"):
        make_judge(srv.url, tmp_path, concurrency=1).compare(RECORDS[:1], A[:1], B[:1])


def test_constrained_modes_send_the_server_fields(server_factory, tmp_path):
    srv = server_factory(prefers_good)
    make_judge(srv.url, tmp_path, constrained="structured_outputs").compare(RECORDS[:1], A[:1], B[:1])
    make_judge(srv.url, tmp_path / "b", constrained="guided_regex").compare(RECORDS[:1], A[:1], B[:1])
    assert srv.requests[0]["body"]["structured_outputs"]["regex"].startswith("(10|[1-9])")
    assert srv.requests[2]["body"]["guided_regex"].startswith("(10|[1-9])")


@pytest.mark.parametrize("kw,match", [
    ({"base_url": "localhost:8000"}, "http://"), ({"constrained": "grammar"}, "constrained"),
    ({"concurrency": 0}, "concurrency"),
])
def test_bad_config_is_a_user_error(tmp_path, kw, match):
    cfg = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **kw}
    with pytest.raises(JudgeError.__mro__[1], match=match):
        LLMJudge(LLMJudgeConfig(**cfg), JudgmentCache(tmp_path / "c.jsonl"))


def test_cache_skips_torn_line_names_it_and_keeps_the_next_reply(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    cache = JudgmentCache(path)
    cache.put("k1", "8 7", "j")
    with open(path, "a") as fh:
        fh.write('{"key": "k2", "rep')  # a crash mid-write
    capsys.readouterr()
    reread = JudgmentCache(path)
    assert reread.get("k1") == "8 7" and reread.get("k2") is None and len(reread) == 1
    assert capsys.readouterr().err.splitlines() == [f"judge cache {path} is damaged (line 2 does not read): kept its "
                                                    "1 readable replies, asking the judge again for the rest"]
    reread.put("k2", "6 5", "j")  # on a line of its own, not glued to the torn one
    again = JudgmentCache(path)
    assert again.get("k2") == "6 5" and len(again) == 2
    assert capsys.readouterr().err.count("is damaged") == 1  # the torn line is still there, named again


def test_cache_with_bytes_that_are_not_utf8_is_one_line(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    JudgmentCache(path).put("k1", "8 7", "j")
    path.write_bytes(path.read_bytes() + b"\xff\xfe\x00\n")
    assert JudgmentCache(path).get("k1") == "8 7"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"judge cache {path} is damaged (line 2 does not read)")
