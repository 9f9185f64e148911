"""Preference losses as pure tensor functions (no model imports).

`make_loss(type, beta1, beta2)` is the one place a run's loss type (optune.choices.LossType) is chosen; the
rest are the equations, each written once. Naming: the reward model's outputs are *scores*; DPO's
beta * log(pi / ref) are *implicit rewards*.

Shapes: B = pairs in the batch, T = tokens, V = vocabulary. Every loss returns the per-pair loss
[B]; the caller takes the mean (or a sum over micro-batches divided by the global batch size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from optune.choices import LossType


def sequence_logps(logits: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Sum of the log-probabilities of the response tokens of each sequence.

    logits: [B, T, V] from the causal LM for input ids [B, T].
    labels: [B, T] the input ids themselves (shifted here: position t predicts token t + 1).
    loss_mask: [B, T] 1 on response tokens, 0 on prompt and padding.
    Returns [B] float32.
    """
    logits = logits[:, :-1, :].float()
    targets = labels[:, 1:]
    mask = loss_mask[:, 1:].to(logits.dtype)
    # log_softmax over V then gather: the memory peak is one float32 [B, T, V] copy.
    token_logps = torch.gather(logits.log_softmax(-1), 2, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1)


def summed_token_logps(logits: torch.Tensor, targets: torch.Tensor, sequence: torch.Tensor, n: int) -> torch.Tensor:
    """Per sequence, the sum of the log-probabilities of its tokens, for tokens gathered from anywhere.

    logits: [N, V] at the N positions that predict a response token (only those: the vocabulary projection
    is not computed for prompt positions). targets: [N] the predicted token ids. sequence: [N] in [0, n), the
    sequence each token belongs to. Returns [n] float32.
    """
    token_logps = logits.float().log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1)
    return torch.zeros(n, dtype=token_logps.dtype, device=token_logps.device).index_add(0, sequence, token_logps)


def dpo_logits(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
) -> torch.Tensor:
    """[B] log-ratio difference (log pi(y_w)/ref(y_w)) - (log pi(y_l)/ref(y_l)), before beta."""
    return (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Eq. 5: -log sigmoid(beta * h) per pair. All inputs [B] sequence log-probs; returns [B]."""
    h = dpo_logits(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return -F.logsigmoid(beta * h)


def pair_weights(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor, beta2: float) -> torch.Tensor:
    """wDPO's w = sigmoid(beta2 * (r_w - r_l)) per pair (Eq. 6), from the reward model's scores of the two
    responses; [B], [B] -> [B], detached (a constant)."""
    return torch.sigmoid(beta2 * (chosen_scores - rejected_scores)).detach()


def wdpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    weights: torch.Tensor,
    beta1: float,
) -> torch.Tensor:
    """Eq. 6: w * (-log sigmoid(beta1 * h)) per pair, w from `pair_weights`; all inputs [B], returns [B].

    No gradient flows into w. With w = 1 this is DPO (Eq. 5); with beta2 = 0 every w is 0.5.
    """
    w = weights.to(policy_chosen_logps.dtype)
    return w * dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta1)


def nll_loss(policy_chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """The chosen response's negative log-likelihood per token, [B] -> [B]: iterative RPO's extra term
    (Pang et al. 2024), which keeps DPO from lowering the chosen responses' likelihood along with the rejected."""
    return -policy_chosen_logps / chosen_lengths.to(policy_chosen_logps.dtype)


def bradley_terry_loss(chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
    """Eq. 1 (reward-model training): -log sigmoid(r(x, y_w) - r(x, y_l)); [B] scores -> [B] losses."""
    return -F.logsigmoid(chosen_scores - rejected_scores)


@dataclass(frozen=True)
class LossOutput:
    """What a preference loss gives per pair, all [B]: the loss, DPO's implicit rewards, the pair weights.

    Implicit rewards are DPO's beta * log(pi / ref) of a response (TRL's rewards/chosen); the reward model's
    outputs are called scores throughout, so the two never share a name.
    """

    losses: torch.Tensor
    chosen_implicit_rewards: torch.Tensor
    """beta1 * (log pi(y_w) - log ref(y_w)), detached."""
    rejected_implicit_rewards: torch.Tensor
    weights: torch.Tensor
    """The weight each pair's loss carries (1 for DPO), detached."""


@dataclass(frozen=True)
class PreferenceLoss:
    """DPO (Eq. 5) or wDPO (Eq. 6) with its temperatures; `make_loss` builds it from the config's loss type."""

    weighted: bool
    beta1: float
    beta2: float
    nll_weight: float = 0.0
    """alpha of loss = (w)DPO + alpha * nll_loss (0: the paper's loss)."""

    def weights(self, chosen_scores: torch.Tensor, rejected_scores: torch.Tensor) -> torch.Tensor:
        """[B] reward-model scores of the pair -> [B] weights: sigmoid(beta2 * gap) for wDPO, ones for DPO."""
        if self.weighted:
            return pair_weights(chosen_scores, rejected_scores, self.beta2)
        return torch.ones_like(chosen_scores)

    def implicit_margin(self, policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                        ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor) -> torch.Tensor:
        """[B] DPO's implicit reward margin beta1 * h: the chosen implicit reward minus the rejected one."""
        return self.beta1 * dpo_logits(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)

    def __call__(self, policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                 chosen_scores, rejected_scores, chosen_lengths=None) -> LossOutput:
        """All inputs [B]: sequence log-probs under the policy and the reference, the reward-model scores, and
        the chosen responses' token counts (needed only with nll_weight > 0)."""
        w = self.weights(chosen_scores, rejected_scores).to(policy_chosen_logps.dtype)
        losses = wdpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, w,
                           self.beta1)
        if self.nll_weight:
            losses = losses + self.nll_weight * nll_loss(policy_chosen_logps, chosen_lengths)
        with torch.no_grad():
            chosen = self.beta1 * (policy_chosen_logps - ref_chosen_logps)
            rejected = self.beta1 * (policy_rejected_logps - ref_rejected_logps)
        return LossOutput(losses, chosen.detach(), rejected.detach(), w)


def make_loss(type: LossType | str, beta1: float, beta2: float = 0.0, nll_weight: float = 0.0) -> PreferenceLoss:
    """The per-pair preference loss of loss.type (a ValueError for a name that is not a LossType)."""
    return PreferenceLoss(LossType(type) is LossType.WDPO, beta1, beta2, nll_weight)
