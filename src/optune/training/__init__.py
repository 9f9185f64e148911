"""Preference training of the policy, and the machinery the reward-model trainer shares.

`iteration.Trainer` is what the loop calls: reference log-probs (`reference.ReferenceSource`: once, stored,
from the cheapest source), LoRA attach/merge, the DPO/wDPO updates of `update.train_iteration`, and the
checkpoint. `logps` computes sequence log-probs of pairs (response tokens only), `schedule` the optimizer,
learning-rate schedule and seeded step plan, `state` the mid-training state that lets a killed run resume at
its last saved step.
"""

from optune.training.logps import collate, pair_logps, reference_logps, response_logps
from optune.training.schedule import make_optimizer, rank_share, step_plan
from optune.training.update import train_iteration

__all__ = ["collate", "make_optimizer", "pair_logps", "rank_share", "reference_logps", "response_logps",
           "step_plan", "train_iteration"]
