"""Rewards: what scores a response while a run is going, and nothing above it.

`backends` holds the run's reward backends (`verifiable`, `hf`, `callable`, `length`, the served ones in
`remote` and `llm`, and `mix`, a weighted sum of named components, in `mix`), each with
`score(prompts, responses) -> list[float]`, chosen by name from `BACKENDS` (`make_reward`); `hf` reads and
scores a trained reward-model checkpoint; `function` loads a user's Python reward; `scores` checks what any
backend returns; `config` is the run's reward section (`RewardConfig`). The reward-model product that trains
those checkpoints is `optune.rewardmodel`; this package never imports it, nor any stage of the loop.
"""
