"""Built-in tasks a run can tune on without any model-based reward.

`verifiable` is the embedded default: instruction-following prompts whose constraints (word counts,
keywords, formats) a program checks, so the reward is exact and needs no reward model (`load` gives the
prompt sets, `reward` scores a response). `toy` holds tiny reward functions for tests and examples.
"""
