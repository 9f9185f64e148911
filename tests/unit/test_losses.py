import math

import pytest
import torch

from optune.choices import LossType
from optune.losses import (
    bradley_terry_loss,
    dpo_loss,
    make_loss,
    nll_loss,
    pair_weights,
    sequence_logps,
    summed_token_logps,
    wdpo_loss,
)


def t(*xs):
    return torch.tensor(xs, dtype=torch.float32)


def test_dpo_loss_hand_worked():
    # h = (-1 - -1.5) - (-2 - -1.5) = 1.0; beta * h = 0.5; loss = log(1 + e^-0.5)
    loss = dpo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.5)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-0.5)), rel=1e-6)
    assert loss.item() == pytest.approx(0.474077, abs=1e-6)


def test_dpo_loss_at_reference_is_log2():
    loss = dpo_loss(t(-3.0, -7.0), t(-4.0, -1.0), t(-3.0, -7.0), t(-4.0, -1.0), beta=0.1)
    assert torch.allclose(loss, torch.full((2,), math.log(2)))


def test_wdpo_loss_hand_worked():
    # w = sigmoid(2 * (0.9 - 0.4)) = sigmoid(1) = 0.7310586; loss = w * 0.4740770
    loss = wdpo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), pair_weights(t(0.9), t(0.4), beta2=2.0), beta1=0.5)
    assert loss.item() == pytest.approx(0.7310586 * 0.4740770, rel=1e-5)


def test_wdpo_with_beta2_zero_is_half_dpo():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(16, generator=g) * 5 for _ in range(4))
    rw, rl = torch.rand(16, generator=g), torch.rand(16, generator=g)
    assert torch.allclose(wdpo_loss(pc, pr, rc, rr, pair_weights(rw, rl, 0.0), 0.3),
                          0.5 * dpo_loss(pc, pr, rc, rr, 0.3))
    assert torch.equal(wdpo_loss(pc, pr, rc, rr, torch.ones(16), 0.3), dpo_loss(pc, pr, rc, rr, 0.3))  # w = 1: Eq. 5


def test_wdpo_weight_carries_no_gradient():
    rw = torch.tensor([0.8], requires_grad=True)
    pc = torch.tensor([-1.0], requires_grad=True)
    loss = wdpo_loss(pc, t(-2.0), t(-1.5), t(-1.5), pair_weights(rw, t(0.1), 3.0), 0.5)
    loss.sum().backward()
    assert rw.grad is None or torch.all(rw.grad == 0)
    assert pc.grad is not None and pc.grad.item() != 0


def test_pair_weights_range():
    w = pair_weights(t(1.0, 0.5, 0.2), t(0.0, 0.5, 0.1), beta2=10.0)
    assert w[1].item() == pytest.approx(0.5)
    assert torch.all((w >= 0.5) & (w < 1))


def test_bradley_terry_hand_worked():
    loss = bradley_terry_loss(t(2.0, 0.0), t(1.0, 0.0))
    assert loss[0].item() == pytest.approx(math.log(1 + math.exp(-1.0)), rel=1e-6)
    assert loss[1].item() == pytest.approx(math.log(2), rel=1e-6)


def test_sequence_logps_counts_response_tokens_only():
    # vocab 3, uniform logits except where we make the target certain
    logits = torch.zeros(1, 4, 3)
    labels = torch.tensor([[0, 1, 2, 0]])
    mask = torch.tensor([[0, 0, 1, 1]])  # tokens 2 and 3 are the response
    # position 1 predicts token 2, position 2 predicts token 3: both uniform -> 2 * log(1/3)
    out = sequence_logps(logits, labels, mask)
    assert out.item() == pytest.approx(2 * math.log(1 / 3), rel=1e-6)
    logits[0, 1, 2] = 100.0  # token 2 now certain
    assert sequence_logps(logits, labels, mask).item() == pytest.approx(math.log(1 / 3), rel=1e-4)
    # prompt-position logits do not matter
    logits[0, 0, :] = torch.tensor([5.0, -5.0, 0.0])
    assert sequence_logps(logits, labels, mask).item() == pytest.approx(math.log(1 / 3), rel=1e-4)


def test_make_loss_is_the_equations():
    pc, pr, rc, rr = t(-1.0, -3.0), t(-2.0, -1.0), t(-1.5, -2.0), t(-1.5, -2.5)
    sc, sr = t(0.8, 0.1), t(0.3, 0.4)
    dpo = make_loss("dpo", beta1=0.5)(pc, pr, rc, rr, sc, sr)
    assert torch.equal(dpo.losses, dpo_loss(pc, pr, rc, rr, 0.5))
    assert torch.equal(dpo.weights, t(1.0, 1.0))
    # implicit rewards: beta * (log pi - log ref), hand-worked for the first pair: 0.5 * 0.5, 0.5 * -0.5
    assert dpo.chosen_implicit_rewards.tolist() == pytest.approx([0.25, -0.5])
    assert dpo.rejected_implicit_rewards.tolist() == pytest.approx([-0.25, 0.75])
    wdpo = make_loss("wdpo", beta1=0.5, beta2=10.0)(pc, pr, rc, rr, sc, sr)
    assert torch.equal(wdpo.losses, wdpo_loss(pc, pr, rc, rr, pair_weights(sc, sr, 10.0), 0.5))
    # hand-worked, first pair: w = sigmoid(10 * 0.5); h = (-1 + 1.5) - (-2 + 1.5) = 1; loss = w * log(1 + e^-0.5)
    assert wdpo.losses[0].item() == pytest.approx(1 / (1 + math.exp(-5.0)) * math.log(1 + math.exp(-0.5)), rel=1e-6)
    assert wdpo.weights.tolist() == pytest.approx([1 / (1 + math.exp(-5.0)), 1 / (1 + math.exp(3.0))])


def test_every_loss_type_builds_and_nothing_else_does():
    assert [make_loss(kind, beta1=0.1).weighted for kind in LossType] == [True, False]
    with pytest.raises(ValueError, match="LossType"):
        make_loss("ipo", beta1=0.1)


def test_summed_token_logps_by_hand():
    # rows: p = (1/4, 3/4), (1/2, 1/2), (3/4, 1/4); tokens 1, 0 of sequence 0 and token 1 of sequence 1
    logits = torch.tensor([[0.0, math.log(3)], [0.0, 0.0], [math.log(3), 0.0]])
    out = summed_token_logps(logits, torch.tensor([1, 0, 1]), torch.tensor([0, 0, 1]), 3)
    expected = torch.tensor([math.log(3 / 4) + math.log(1 / 2), math.log(1 / 4), 0.0])
    assert out.dtype == torch.float32 and torch.allclose(out, expected, atol=1e-6)


def test_nll_term_hand_worked():
    pc, pr, rc, rr = t(-6.0), t(-2.0), t(-1.5), t(-1.5)
    assert nll_loss(t(-6.0, -1.0), torch.tensor([3, 4])).tolist() == pytest.approx([2.0, 0.25])  # -logp / tokens
    plain = make_loss("dpo", beta1=0.5)(pc, pr, rc, rr, t(1.0), t(0.0))
    rpo = make_loss("dpo", beta1=0.5, nll_weight=0.2)(pc, pr, rc, rr, t(1.0), t(0.0), chosen_lengths=torch.tensor([3]))
    # h = (-6 + 1.5) - (-2 + 1.5) = -4: dpo = log(1 + e^2); plus 0.2 * 6 / 3
    assert plain.losses.item() == pytest.approx(math.log(1 + math.exp(2.0)), rel=1e-6)
    assert rpo.losses.item() == pytest.approx(math.log(1 + math.exp(2.0)) + 0.4, rel=1e-6)


def test_implicit_margin_hand_worked_and_the_implicit_rewards_agree():
    # h = (-1 - -1.5) - (-2 - -1.5) = 1.0, and (-3 - -3) - (-3 - -4) = -1.0; beta1 = 0.5
    loss = make_loss("wdpo", 0.5, 2.0)
    args = (t(-1.0, -3.0), t(-2.0, -3.0), t(-1.5, -3.0), t(-1.5, -4.0))
    assert loss.implicit_margin(*args).tolist() == [0.5, -0.5]
    out = loss(*args, t(1.0, 1.0), t(0.0, 0.0))
    assert torch.equal(out.chosen_implicit_rewards - out.rejected_implicit_rewards, loss.implicit_margin(*args))
