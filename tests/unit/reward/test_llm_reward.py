"""The `llm` reward backend: the rating parser, the prompt, retries of unparseable replies, cache and key.

Replies are scripted by the loopback endpoint of tests/unit/conftest.py (a real server cannot be told
what to answer); the backend against a real vLLM server is in test_llm_reward_vllm.py.
"""

from __future__ import annotations

import re
import socket

import pytest

from optune.config.run import load_config
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.backends import checked_score, make_reward
from optune.reward.config import RewardConfig
from optune.reward.llm import RATING_LINE_REGEX, LLMReward, messages, parse_rating

RECORDS = [Prompt(f"p{i}", f"question {i}") for i in range(3)]
RESPONSES = ["answer rated 8", "answer rated 3", "answer rated 10"]


def completion(text):
    return 200, {"choices": [{"message": {"role": "assistant", "content": text}}]}, {}


def rates_by_answer(n, body):
    """Rates an answer with the number written at its end ("... rated 8" -> "8")."""
    user = body["messages"][1]["content"]
    answer = user.split("[The Start of the Assistant's Answer]\n")[1].split("\n")[0]
    return completion(f"{answer.split()[-1]}\nbecause it says so")


def llm(url, tmp_path=None, **kw) -> LLMReward:
    cache = str(tmp_path / "ratings.jsonl") if tmp_path is not None else None
    return LLMReward(RewardConfig(backend="llm", url=url, model="rater", cache=cache, **kw), sleep=lambda s: None)


@pytest.mark.parametrize("reply,expected", [
    ("8", 8.0), ("8\nA fine answer.", 8.0), ("Score: 8/10", 8.0), ("Rating: [[7]]", 7.0), ("**9**", 9.0),
    ("7.5 out of 10\nclose", 7.5), ("10", 10.0), ("1.", 1.0), ("\n\n  6  \nok", 6.0),
    ("", None), (None, None), ("0", None), ("11", None), ("8 7", None), ("Great answer!", None),
    ("I'd give it 8, maybe 9", None), ("-3", None), ("8-9", None),
])
def test_parse_rating(reply, expected):
    assert parse_rating(reply) == expected


def test_rating_regex_admits_exactly_the_scale():
    ok = [str(i) for i in range(1, 11)] + ["7\nbecause"]
    assert all(re.fullmatch(RATING_LINE_REGEX, s) for s in ok)
    assert not any(re.fullmatch(RATING_LINE_REGEX, s) for s in ["0", "11", "07", "x"])
    assert all(parse_rating(s) is not None for s in ok)  # what constrained decoding allows always parses


def test_prompt_shows_question_answer_and_earlier_turns():
    record = Prompt("x", "And in Spain?", history=[
        {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}])
    system, user = messages(record, "Madrid.")
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    assert "[Earlier Conversation]\nUser: Capital of France?\nAssistant: Paris.\n\n[Question]\nAnd in Spain?" in text
    assert "[The Start of the Assistant's Answer]\nMadrid.\n" in text and "scale of 1 to 10" in text
    assert "[Earlier Conversation]" not in messages(Prompt("y", "q"), "a")[1]["content"]


def test_ratings_in_order_cached_and_never_asked_twice(server_factory, tmp_path):
    srv = server_factory(rates_by_answer)
    cache = str(tmp_path / "ratings.jsonl")
    backend = make_reward(RewardConfig(backend="llm", url=srv.url, model="rater", cache=cache))
    assert checked_score(backend, RECORDS, RESPONSES) == [8.0, 3.0, 10.0]
    body = srv.requests[0]["body"]
    assert body["model"] == "rater" and body["temperature"] == 0.0 and body["max_tokens"] == 256
    assert srv.requests[0]["path"] == "/v1/chat/completions" and "structured_outputs" not in body
    assert llm(srv.url, tmp_path, max_retries=0).score(RECORDS, RESPONSES) == [8.0, 3.0, 10.0]
    assert len(srv.requests) == 3  # the second backend read every rating from the cache
    # Another rater model is another cache entry.
    assert LLMReward(RewardConfig(backend="llm", url=srv.url, model="other", cache=str(tmp_path / "ratings.jsonl"))
                     ).score(RECORDS[:1], RESPONSES[:1]) == [8.0]
    assert len(srv.requests) == 4


def test_unparseable_reply_is_asked_again_hotter(server_factory):
    srv = server_factory(lambda n, body: completion("Hmm, hard to say.") if n == 0 else completion("6"))
    assert llm(srv.url, concurrency=1).score(RECORDS[:1], RESPONSES[:1]) == [6.0]
    assert [r["body"]["temperature"] for r in srv.requests] == [0.0, 0.7]


def test_never_parseable_is_reported_never_zero(server_factory, tmp_path):
    srv = server_factory(lambda n, body: completion("The answer is fine."))
    backend = llm(srv.url, tmp_path, parse_retries=2, concurrency=1)
    with pytest.raises(UserError, match=r"reward LLM at http://127.0.0.1:\d+/v1 gave no 1-10 rating for prompt "
                                        r"'p0' in 3 tries \(last reply: 'The answer is fine.'\).*"
                                        r"reward.constrained=structured_outputs.*cached in .*ratings.jsonl"):
        checked_score(backend, RECORDS, RESPONSES)
    assert len(srv.requests) == 3  # one prompt, three tries; no new prompt starts after the failure


def test_constrained_decoding_fields(server_factory):
    srv = server_factory(lambda n, body: completion("7"))
    llm(srv.url, constrained="structured_outputs").score(RECORDS[:1], RESPONSES[:1])
    llm(srv.url, constrained="guided_regex").score(RECORDS[:1], RESPONSES[:1])
    assert srv.requests[0]["body"]["structured_outputs"] == {"regex": RATING_LINE_REGEX}
    assert srv.requests[1]["body"]["guided_regex"] == RATING_LINE_REGEX


def test_key_sent_from_environment_and_never_cached(server_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTUNE_TEST_RATER_KEY", "sk-rater-secret")
    srv = server_factory(rates_by_answer)
    llm(srv.url, tmp_path, api_key_env="OPTUNE_TEST_RATER_KEY").score(RECORDS, RESPONSES)
    assert {r["auth"] for r in srv.requests} == {"Bearer sk-rater-secret"}
    assert "sk-rater-secret" not in (tmp_path / "ratings.jsonl").read_text()


def test_missing_key_variable_and_missing_model_fail_before_any_request(monkeypatch):
    monkeypatch.delenv("OPTUNE_TEST_UNSET_KEY", raising=False)
    with pytest.raises(UserError, match="OPTUNE_TEST_UNSET_KEY, which is not set"):
        llm("http://127.0.0.1:1/v1", api_key_env="OPTUNE_TEST_UNSET_KEY")
    with pytest.raises(UserError, match="reward.backend llm needs reward.model"):
        load_config(overrides=["reward.backend=llm", "reward.url=http://127.0.0.1:1/v1"])


@pytest.mark.parametrize("override,match", [
    ("reward.concurrency=0", "reward.concurrency"), ("reward.timeout_s=0", "reward.timeout_s"),
    ("reward.parse_retries=-1", "parse_retries"), ("reward.constrained=grammar", "reward.constrained"),
])
def test_bad_settings_are_config_errors(override, match):
    with pytest.raises(UserError, match=match):
        load_config(overrides=["reward.backend=llm", "reward.url=http://127.0.0.1:1/v1", "reward.model=m", override])


def test_server_down_names_the_endpoint():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UserError, match=rf"cannot reach reward LLM at http://127.0.0.1:{port}/v1/chat/completions"
                                        r".*gave up after 2 attempts"):
        llm(f"http://127.0.0.1:{port}/v1", max_retries=1).score(RECORDS[:1], RESPONSES[:1])


def test_not_a_chat_completion(server_factory):
    srv = server_factory(lambda n, body: (200, {"data": []}, {}))
    with pytest.raises(UserError, match="reward LLM at .* sent a reply that is not a chat completion"):
        llm(srv.url).score(RECORDS[:1], RESPONSES[:1])
