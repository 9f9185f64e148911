"""The reward-model product of `optune reward`: train, evaluate and serve a Bradley-Terry reward model.

`model` builds a backbone with a one-output head and its normalisation statistics; `train` fits it on
preference pairs (Eq. 1, resumable); `evaluation` measures held-out pairwise accuracy; `serve` answers the
remote backend's minimal protocol; `config` is `RewardTrainConfig`, the YAML of `optune reward train`.
A run scores with a trained checkpoint through `optune.reward.hf`, which this package builds on.
"""
