"""Tiny random reward backbones built from configs (no hub, no download), saved to tmp dirs."""

from __future__ import annotations

import json

import pytest
import torch

WORDS = (
    "human assistant system what is the best way to cook rice please help me good great helpful bad awful "
    "useless answer question thanks you i a an of and or it this that yes no sure here are some : ? . ,"
).split()


def make_bert(path, num_labels: int = 1, seed: int = 0):
    """A 2-layer, 32-wide BERT with a WordPiece vocabulary of the words above."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, num_labels=num_labels)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_causal(path, eos: bool = True, chat_template: str | None = None):
    """A 1-layer Llama with a whitespace word-level tokenizer; no pad token on purpose."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>", "<|user|>", "<|assistant|>"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<eos>" if eos else None)
    if chat_template:
        tok.chat_template = chat_template
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_pairs(path, n: int, good: str = "good great helpful", bad: str = "bad awful useless"):
    """n JSONL pairs where the chosen answer always uses the 'good' words: easily learnable."""
    rows = []
    for i in range(n):
        prompt = ["what is the best way to cook rice ?", "please help me", "is this a good question ?"][i % 3]
        rows.append({"prompt": prompt, "chosen": f"{good} answer {i % 5}", "rejected": f"{bad} answer {i % 7}"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def tiny_bert(tmp_path):
    return make_bert(tmp_path / "tiny-bert")


@pytest.fixture
def pair_files(tmp_path):
    return write_pairs(tmp_path / "train.jsonl", 48), write_pairs(tmp_path / "heldout.jsonl", 16)
