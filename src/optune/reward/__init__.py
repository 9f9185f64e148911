"""Rewards: what scores a response, and the reward models behind the learned ones.

`backends` holds the run's reward backends (`verifiable`, `hf`, `callable`, `length`, the served ones in
`remote` and `llm`, and `mix`, a weighted sum of named components, in `mix`), each with
`score(prompts, responses) -> list[float]`, chosen by name from `BACKENDS` (`make_reward`); `serve` is the
reference server of the remote backend's minimal protocol. The rest is the Bradley-Terry reward model of
`optune reward`: `model` (backbone, head, save/load, normalisation statistics), `training` (Eq. 1 on
preference pairs, resumable), `evaluation` (held-out accuracy) and `config` (`RewardTrainConfig`, the YAML
of `optune reward train`).
"""
