"""The pure sampling rule against transformers' warpers, and the partial-sort fast path against the full sort."""

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from optune.generation.sampling import choose, sample_top_p, token_logprobs

GRID = 4_000


def transformers_distribution(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """What model.generate samples from: [B, V] probabilities after its temperature and top-p warpers."""
    scores = TemperatureLogitsWarper(temperature)(None, logits.clone()) if temperature != 1.0 else logits.clone()
    if top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(None, scores)
    return scores.softmax(-1)


def grid_frequencies(probs_row: torch.Tensor, top_p: float, k) -> torch.Tensor:
    """Token frequencies [V] of sample_top_p over an evenly spaced grid of GRID uniforms (an exact quadrature)."""
    u = (torch.arange(GRID, dtype=torch.float32) + 0.5) / GRID
    tokens = sample_top_p(probs_row.expand(GRID, -1), top_p, u, prefilter=k)
    return torch.bincount(tokens, minlength=probs_row.shape[0]).float() / GRID


@pytest.mark.parametrize("temperature,top_p", [(1.0, 0.9), (0.7, 0.5), (1.5, 0.95), (1.0, 1.0)])
@pytest.mark.parametrize("k", [(), (8,), (4, 16), (1000,)])
def test_same_distribution_as_transformers_warpers(temperature, top_p, k):
    logits = torch.randn(5, 50, generator=torch.Generator().manual_seed(0)) * 3
    expected = transformers_distribution(logits, temperature, top_p)
    probs = (logits / temperature).softmax(-1)
    for row in range(len(logits)):
        got = grid_frequencies(probs[row], top_p, k)
        assert set(got.nonzero().squeeze(1).tolist()) <= set(expected[row].nonzero().squeeze(1).tolist())
        assert torch.allclose(got, expected[row], atol=2 / GRID), (row, (got - expected[row]).abs().max())


def test_prefilter_gives_the_same_tokens_as_the_full_sort():
    gen = torch.Generator().manual_seed(1)
    scale = torch.logspace(-1, 1.2, 400).unsqueeze(1)  # rows from nearly flat to very peaked
    probs = (torch.randn(400, 2000, generator=gen) * scale).softmax(-1)
    u = torch.rand(400, generator=gen)
    top_mass = probs.topk(32, dim=-1).values.sum(-1)
    assert (top_mass < 0.9).any() and (top_mass >= 0.9).any()  # both the fast rows and the fallback rows occur
    full = sample_top_p(probs, 0.9, u, prefilter=())
    for stages in ((32,), (256,), (32, 256), (8, 32, 256)):
        assert torch.equal(sample_top_p(probs, 0.9, u, prefilter=stages), full)


def test_the_nucleus_boundary():
    # kept: {1} (0.92 reaches 0.9); {0, 1, 2} (0.8 before the last); {0, 1} (0.95 before the last)
    probs = torch.tensor([[0.05, 0.92, 0.03], [0.5, 0.3, 0.2], [0.6, 0.35, 0.05]])
    top = torch.full((3,), 1 - 2 ** -24)
    for stages in ((), (1,), (2,), (1, 2)):
        assert sample_top_p(probs, 0.9, top, prefilter=stages).tolist() == [1, 2, 1]
        assert sample_top_p(probs, 0.9, torch.zeros(3), prefilter=stages).tolist() == [1, 0, 0]


def test_token_logprobs_are_the_raw_log_softmax():
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(2)) * 4
    tokens = torch.tensor([0, 5, 29, 7])
    expected = logits.log_softmax(-1).gather(1, tokens.unsqueeze(1)).squeeze(1)
    assert torch.allclose(token_logprobs(logits, tokens), expected, atol=1e-6)


def test_choose_greedy_with_suppressed_tokens():
    logits = torch.tensor([[0.0, 3.0, 1.0], [2.0, 0.0, 5.0]])
    raw = logits.log_softmax(-1)
    tokens, logp = choose(logits, [], greedy=True, temperature=1.0, top_p=0.9, u=None)
    assert tokens.tolist() == [1, 2] and torch.allclose(logp, raw[[0, 1], [1, 2]])
    tokens, logp = choose(logits, [2], greedy=True, temperature=1.0, top_p=0.9, u=None)
    assert tokens.tolist() == [1, 0] and torch.allclose(logp, raw[[0, 1], [1, 0]])  # raw: token 2 still counts
    assert logits[1, 2] == 5.0


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_choose_samples_like_transformers_with_suppressed_tokens(temperature):
    """EOS suppressed before min_new_tokens: transformers sets its logit to -inf before the warpers."""
    logits = torch.randn(1, 40, generator=torch.Generator().manual_seed(3)) * 2
    logits[0, 5] = logits.max() + 1  # the suppressed token would be the likeliest
    masked = logits.clone()
    masked[0, 5] = float("-inf")
    expected = transformers_distribution(masked, temperature, 0.9)[0]
    u = (torch.arange(GRID, dtype=torch.float32) + 0.5) / GRID
    tokens, logp = choose(logits.expand(GRID, -1), [5], False, temperature, 0.9, u, prefilter=(4,))
    got = torch.bincount(tokens, minlength=40).float() / GRID
    assert got[5] == 0 and torch.allclose(got, expected, atol=2 / GRID)
    assert torch.allclose(logp, logits.log_softmax(-1)[0, tokens], atol=1e-6)


def test_choose_logp_of_a_token_too_unlikely_for_float32_probabilities():
    logits = torch.tensor([[0.0, -80.0, -90.0]])  # raw p of token 2: e^-90, below float32's normal range
    tokens, logp = choose(logits, [0, 1], greedy=False, temperature=1000.0, top_p=1.0, u=torch.tensor([0.5]))
    assert tokens.tolist() == [2] and torch.allclose(logp, logits.log_softmax(-1)[0, 2:], atol=1e-5)
