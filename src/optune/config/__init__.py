"""A run's configuration: dataclasses with a docstring per field are the one source of truth.

`run` holds `RunConfig` and its sections (policy, data, generation, selection, loss, train, lora, eval) and
`load_run_config`; the reward section is `optune.reward.config` (it lives with the backends it configures).
`schema` turns any of these dataclasses into YAML and back and applies `key.sub=value` overrides (unknown
keys are refused with the valid ones listed); `keys` holds the key aliases (TRL's names) and the path rules.
This package's `__init__` imports nothing, so `optune.reward.config` can use `schema` below `run`.
"""
