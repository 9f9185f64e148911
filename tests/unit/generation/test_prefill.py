"""The shared-prefix, length-sorted prefill against the plain one (one padded batch, the model's own cache)."""

import pytest
import torch

from optune.generation import decode as decode_module
from optune.generation import kernels
from optune.generation import prefill as prefill_module
from optune.generation.base import left_pad
from optune.generation.decode import DecodeSettings, decode
from optune.generation.prefill import common_prefix

EOS = 2


def test_common_prefix_leaves_every_prompt_a_token():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == 2
    assert common_prefix([[1, 2], [1, 2, 3]]) == 1
    assert common_prefix([[7, 2], [1, 2]]) == 0
    assert common_prefix([[1, 2, 3]]) == 0


@pytest.fixture(scope="module")
def model(tiny_policy):
    from optune.models.policy import load_model

    model = load_model(tiny_policy)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
        model.model.embed_tokens.weight[EOS] *= 2.5
    return model.eval()


PROMPTS = {  # a common prefix of 4 tokens and rests of 1 to 9 tokens; none in common
    "shared": [[1, 9, 9, 9] + list(range(40, 40 + k)) for k in (3, 9, 1, 5, 7, 2)],
    "none": [[30 + k] + list(range(60, 60 + k)) for k in (3, 9, 1, 5, 7, 2)],
}


def outputs(model, prompts, n, **settings):
    settings = DecodeSettings(**{"max_new_tokens": 8, **settings})
    return [(d.tokens, d.logp) for d in decode(model, prompts, n, 0, [EOS], settings, seed=2)]


def same(a, b) -> bool:
    """Identical tokens, log-probs equal up to float32 rounding."""
    return [t for t, _ in a] == [t for t, _ in b] and all(abs(x - y) < 1e-5 for (_, x), (_, y) in zip(a, b))


def plain_path(monkeypatch):
    """Make the decode loop take the plain path (one padded batch, the model's own cache)."""
    monkeypatch.setattr(decode_module, "cascade_ready", lambda model: False)


@pytest.fixture
def cascade_steps(monkeypatch):
    """Counts kernels.cascade_step calls: which path a decode call took."""
    calls = []
    real = kernels.cascade_step
    monkeypatch.setattr(kernels, "cascade_step", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("prompts", ["shared", "none"])
@pytest.mark.parametrize("chunk", [1, 4, 8])
@pytest.mark.parametrize("n", [1, 3])
def test_same_tokens_and_logps_as_one_padded_batch(model, monkeypatch, cascade_steps, prompts, chunk, n):
    sampled = dict(top_p=0.9, temperature=1.0)
    with monkeypatch.context() as plain:
        plain_path(plain)
        plain_greedy, plain = (outputs(model, PROMPTS[prompts], n, greedy=True),
                               outputs(model, PROMPTS[prompts], n, **sampled))
    assert not cascade_steps
    monkeypatch.setattr(prefill_module, "PREFILL_CHUNK", chunk)
    assert same(outputs(model, PROMPTS[prompts], n, greedy=True), plain_greedy)
    assert same(outputs(model, PROMPTS[prompts], n, **sampled), plain)
    assert cascade_steps
    assert any(len(tokens) < 8 for tokens, _ in plain)  # some rows end early: decoding goes on past them


def test_sliding_window_cache_takes_the_plain_path():
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                           max_position_embeddings=128, eos_token_id=EOS, pad_token_id=0)
    torch.manual_seed(0)
    model = MistralForCausalLM(config).eval()
    assert not prefill_module.cascade_ready(model)
    prompts = [[1, 5, 6, 7, 8, 9], [1, 5, 10]]
    ids, mask = left_pad(prompts, 0)
    expected = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                              pad_token_id=0, eos_token_id=EOS)[:, ids.shape[1]:].tolist()
    got = decode(model, prompts, 1, 0, [EOS], DecodeSettings(max_new_tokens=8, min_new_tokens=8, greedy=True))
    assert [d.tokens for d in got] == expected


@pytest.mark.parametrize("settings", [dict(greedy=True), dict(top_p=0.9), dict(top_p=0.8, temperature=0.7)])
@pytest.mark.parametrize("plain", [False, True])
def test_dropping_finished_rows_changes_nothing(model, monkeypatch, settings, plain):
    if plain:  # the model's own cache classes also drop rows
        plain_path(monkeypatch)
    prompts = PROMPTS["shared"]
    kept = outputs(model, prompts, 2, max_new_tokens=12, compact=False, **settings)
    assert sum(len(tokens) < 12 for tokens, _ in kept) >= 3  # rows end at different steps: several drops
    assert same(outputs(model, prompts, 2, max_new_tokens=12, **settings), kept)
