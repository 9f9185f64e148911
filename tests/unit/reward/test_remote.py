"""The `remote` reward backend: the minimal protocol against optune's real reference server, and every failure.

The success path runs against `RewardServer` (optune reward serve) wrapping the in-process hf backend on a
tiny BERT, so the numbers must equal the in-process ones. Failures a real server cannot be made to show on
demand (garbage, wrong counts, NaN, 5xx, a hang) come from the scripted loopback endpoint of
tests/unit/conftest.py. vLLM's /classify and /pooling are exercised for real in test_remote_vllm.py.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from optune.config.run import load_config
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.backends import HFReward, checked_score, make_reward
from optune.reward.config import RewardConfig
from optune.reward.remote import RemoteReward
from optune.rewardmodel.serve import RewardServer

WORDS = ["what is the best way to cook rice ?", "please help me", "is this a good question ?"]
RECORDS = [Prompt(f"p{i}", WORDS[i % 3]) for i in range(5)]
RECORDS[4].history.extend([{"role": "user", "content": "please help me"}, {"role": "assistant", "content": "sure"}])
RESPONSES = ["good great helpful answer", "bad awful", "sure here are some", "no", "yes thanks"]


def remote(url, sleeps=None, **kw) -> RemoteReward:
    cfg = RewardConfig(backend="remote", url=url, **kw)
    return RemoteReward(cfg, sleep=(lambda s: sleeps.append(s)) if sleeps is not None else (lambda s: None))


@pytest.fixture
def hf_server(tiny_bert):
    server = RewardServer(HFReward(RewardConfig(backend="hf", model=str(tiny_bert)))).start()
    yield server
    server.close()


def test_minimal_protocol_matches_in_process_scores_in_batches(hf_server, tiny_bert):
    local = HFReward(RewardConfig(backend="hf", model=str(tiny_bert))).score(RECORDS, RESPONSES)
    backend = make_reward(RewardConfig(backend="remote", url=hf_server.url, route="optune", batch_size=2))
    scores = checked_score(backend, RECORDS, RESPONSES)
    assert scores == pytest.approx(local, abs=1e-6)
    assert len(set(scores)) == len(scores)  # distinct numbers: the order of the reply is tested too
    assert hf_server.requests == 3  # 5 responses in batches of 2


def test_history_reaches_the_server(hf_server, tiny_bert):
    """The multi-turn record scores differently with and without its earlier turns, both ends agree."""
    flat = [Prompt("x", RECORDS[4].text)]
    backend = remote(hf_server.url, route="optune")
    assert backend.score(RECORDS[4:], RESPONSES[4:]) != pytest.approx(backend.score(flat, RESPONSES[4:]))


def test_api_key_is_sent_and_a_wrong_one_is_one_clear_line(tiny_bert, monkeypatch):
    monkeypatch.setenv("OPTUNE_TEST_RM_SERVER_KEY", "sk-server-side")
    server = RewardServer(HFReward(RewardConfig(backend="hf", model=str(tiny_bert))),
                          api_key_env="OPTUNE_TEST_RM_SERVER_KEY").start()
    try:
        monkeypatch.setenv("OPTUNE_TEST_RM_KEY", "sk-server-side")
        assert len(remote(server.url, route="optune", api_key_env="OPTUNE_TEST_RM_KEY").score(
            RECORDS, RESPONSES)) == 5
        monkeypatch.setenv("OPTUNE_TEST_RM_KEY", "sk-wrong-one")
        with pytest.raises(UserError, match=r"refused the API key \(HTTP 401\).*OPTUNE_TEST_RM_KEY") as info:
            remote(server.url, route="optune", api_key_env="OPTUNE_TEST_RM_KEY").score(RECORDS, RESPONSES)
        assert "sk-wrong-one" not in str(info.value)
        with pytest.raises(UserError, match=r"HTTP 401\): it wants an API key"):
            remote(server.url, route="optune").score(RECORDS, RESPONSES)
    finally:
        server.close()


def test_missing_key_variable_fails_before_any_request(server_factory, monkeypatch):
    monkeypatch.delenv("OPTUNE_TEST_UNSET_KEY", raising=False)
    srv = server_factory(lambda n, body: (200, {"scores": [1.0]}, {}))
    with pytest.raises(UserError, match="reward.api_key_env names the environment variable OPTUNE_TEST_UNSET_KEY, "
                                        "which is not set"):
        make_reward(RewardConfig(backend="remote", url=srv.root, api_key_env="OPTUNE_TEST_UNSET_KEY"))
    assert srv.requests == []


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://127.0.0.1/x", "http://", "http://127.0.0.1:port", None])
def test_bad_url_is_a_config_error(url):
    with pytest.raises(UserError, match="reward.url"):
        load_config(overrides=["reward.backend=remote", f"reward.url={url if url else 'null'}"])


def test_unknown_route_is_a_config_error():
    with pytest.raises(UserError, match="reward.route must be one of classify, pooling, optune"):
        load_config(overrides=["reward.backend=remote", "reward.url=http://127.0.0.1:1", "reward.route=score"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_server_down_retries_with_backoff_then_names_the_url(capsys):
    port = _closed_port()
    sleeps = []
    with pytest.raises(UserError, match=rf"cannot reach reward server at http://127.0.0.1:{port}/classify: .*"
                                        r"gave up after 3 attempts"):
        remote(f"http://127.0.0.1:{port}", sleeps, max_retries=2, concurrency=1).score(RECORDS[:1], RESPONSES[:1])
    assert sleeps == [1.0, 2.0]
    # each retry is logged as it happens: the attempt, the cause, the wait
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2, lines
    for n, (line, wait) in enumerate(zip(lines, ("1", "2")), start=1):
        assert line.startswith(f"optune: reward server: attempt {n} of 3 failed: cannot reach reward server at "
                               f"http://127.0.0.1:{port}/classify: "), line
        assert line.endswith(f"; retrying in {wait} s"), line


def test_a_retry_honours_retry_after_and_logs_it(server_factory):
    from optune.endpoint import Endpoint

    srv = server_factory(lambda n, body: (429, {"error": "slow down"}, {"Retry-After": "7"}) if n == 0
                         else (200, {"ok": 1}, {}))
    logged, sleeps = [], []
    reply = Endpoint("judge", sleep=sleeps.append, log=logged.append).post_json(srv.url + "/x", {}, "JSON")
    assert reply == {"ok": 1} and sleeps == [7.0]
    assert logged == [f"optune: judge: attempt 1 of 6 failed: judge at {srv.url}/x: rate limited (HTTP 429) "
                      '{"error": "slow down"}; retrying in 7 s']


def test_a_hanging_server_times_out(server_factory):
    srv = server_factory(lambda n, body: (time.sleep(1.5), (200, {"scores": [1.0]}, {}))[1])
    with pytest.raises(UserError, match=r"no reply within 0.2 s \(gave up after 2 attempts\)"):
        remote(srv.root, route="optune", timeout_s=0.2, max_retries=1).score(RECORDS[:1], RESPONSES[:1])
    assert len(srv.requests) == 2


def classify_reply(value):
    return 200, {"data": [{"index": 0, "label": "LABEL_0", "probs": [value], "num_classes": 1}]}, {}


def test_server_errors_are_retried_and_client_errors_are_not(server_factory):
    srv = server_factory(lambda n, body: (503, b"loading", {}) if n == 0 else classify_reply(0.5))
    assert remote(srv.root, concurrency=1).score(RECORDS[:1], RESPONSES[:1]) == [0.5]
    assert len(srv.requests) == 2
    bad = server_factory(lambda n, body: (404, {"error": {"message": "The model `x` does not exist."}}, {}))
    with pytest.raises(UserError, match=r"rejected the request \(HTTP 404\).*does not exist"):
        remote(bad.root, model="x").score(RECORDS[:1], RESPONSES[:1])
    assert len(bad.requests) == 1


@pytest.mark.parametrize("route,reply,match", [
    ("classify", (200, b"<html>proxy login</html>", {}), "sent a reply that is not JSON"),
    ("classify", (200, {"data": []}, {}), r"sent no data\[0\].probs for prompt 'p0'"),
    ("classify", classify_reply("high"), "sent 'high' as the score of a response to prompt 'p0'"),
    ("classify", classify_reply(None), "sent None as the score"),
    ("classify", (200, b'{"data": [{"probs": [NaN]}]}', {}), "sent nan as the score"),
    ("classify", (200, {"data": [{"probs": [0.1, 0.9]}]}, {}), "2 numbers for one response of prompt 'p0'"),
    ("pooling", (200, {"data": [{"data": [[0.1], [0.2]]}]}, {}), "2 numbers for one response"),
    ("optune", (200, {"scores": [1.0]}, {}), "1 scores for 2 responses"),
    ("optune", (200, {"scores": [True, 1.0]}, {}), "sent True as the score"),
    ("optune", (200, {"rewards": [1.0, 2.0]}, {}), 'no "scores" list for the batch starting at prompt \'p0\''),
    ("optune", (200, [1.0, 2.0], {}), 'no "scores" list'),
])
def test_malformed_replies_are_errors_never_zeros(server_factory, route, reply, match):
    srv = server_factory(lambda n, body: reply)
    with pytest.raises(UserError, match=match):
        remote(srv.root, route=route).score(RECORDS[:2], RESPONSES[:2])


def test_vllm_request_shapes(server_factory):
    def script(n, body):
        return (200, {"data": [{"index": 0, "data": [1.0]}]}, {}) if "task" in body else classify_reply(1.0)

    srv = server_factory(script)
    remote(srv.root, model="rm").score(RECORDS[4:], RESPONSES[4:])
    remote(srv.root, route="pooling").score(RECORDS[:1], RESPONSES[:1])
    (first, second) = srv.requests
    assert first["path"] == "/classify" and second["path"] == "/pooling"
    assert first["body"] == {"model": "rm", "use_activation": False, "messages": [
        {"role": "user", "content": "please help me"}, {"role": "assistant", "content": "sure"},
        {"role": "user", "content": RECORDS[4].text}, {"role": "assistant", "content": RESPONSES[4]}]}
    assert "model" not in second["body"] and second["body"]["task"] == "classify"


def test_pooling_reply_may_be_a_bare_number(server_factory):
    srv = server_factory(lambda n, body: (200, {"data": [{"index": 0, "data": 2.5}]}, {}))
    assert remote(srv.root, route="pooling").score(RECORDS[:1], RESPONSES[:1]) == [2.5]


def test_concurrency_is_bounded_and_order_kept(server_factory):
    def script(n, body):
        time.sleep(0.05)
        return classify_reply(float(body["messages"][-1]["content"]))

    srv = server_factory(script)
    records = [Prompt(f"q{i}", "p") for i in range(12)]
    scores = remote(srv.root, concurrency=3).score(records, [str(i) for i in range(12)])
    assert scores == [float(i) for i in range(12)]
    assert len(srv.requests) == 12 and srv.max_in_flight <= 3


def test_first_failure_stops_new_requests(server_factory):
    srv = server_factory(lambda n, body: (400, {"error": "bad input"}, {}))
    records = [Prompt(f"q{i}", "p") for i in range(20)]
    with pytest.raises(UserError, match=r"HTTP 400"):
        remote(srv.root, concurrency=2).score(records, ["r"] * 20)
    assert len(srv.requests) <= 3  # the failing one and at most the others already in flight


def test_reference_server_rejects_malformed_requests(hf_server):
    import urllib.error
    import urllib.request

    def post(path, body):
        req = urllib.request.Request(hf_server.url + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    assert post("/rewards", b"not json")[0] == 400
    assert post("/rewards", json.dumps({"items": [{"prompt": "x"}]}).encode()) == (
        400, {"error": 'item 0 needs string fields "prompt" and "response"'})
    assert post("/classify", b"{}")[0] == 404
    with urllib.request.urlopen(hf_server.url + "/health", timeout=10) as r:
        assert json.loads(r.read()) == {"status": "ok"}
