from types import SimpleNamespace

from optune.config import RunConfig
from optune.loop import sampler_reference


def ctx_with(sampler_logprobs: bool, reference: str = "previous"):
    cfg = RunConfig()
    cfg.generation.backend = "vllm"
    cfg.generation.sampler_logprobs = sampler_logprobs
    cfg.loss.reference = reference
    return SimpleNamespace(cfg=cfg)


PAIRS = [{"chosen_logp": -3.0, "rejected_logp": -4.0},   # both responses sampled at this iteration
         {},                                             # kept from an earlier iteration: no logps attached
         {"chosen_logp": -1.0, "rejected_logp": None}]   # backend gave none


def test_sampler_logps_used_only_where_they_are_the_reference():
    assert sampler_reference(ctx_with(True), 1, PAIRS) == [(-3.0, -4.0), None, None]
    assert sampler_reference(ctx_with(False), 1, PAIRS) == [None, None, None]
    # reference pi_0: iteration 0 samples from pi_0, later iterations do not
    assert sampler_reference(ctx_with(True, "initial"), 0, PAIRS)[0] == (-3.0, -4.0)
    assert sampler_reference(ctx_with(True, "initial"), 2, PAIRS) == [None, None, None]
