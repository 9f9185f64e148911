from types import SimpleNamespace

from optune.config import RunConfig
from optune.pairs import Pair, Response
from optune.training.iteration import sampler_reference


def ctx_with(sampler_logprobs: bool, reference: str = "previous"):
    cfg = RunConfig()
    cfg.generation.backend = "vllm"
    cfg.generation.sampler_logprobs = sampler_logprobs
    cfg.loss.reference = reference
    return SimpleNamespace(cfg=cfg)


def pair(t_chosen, t_rejected, logp_chosen, logp_rejected, t):
    return Pair("p", [1], Response("a", [2], True, 1.0, t_chosen, logp_chosen),
                Response("b", [3], True, 0.0, t_rejected, logp_rejected))


def pairs_at(t):
    return [pair(t, t, -3.0, -4.0, t),          # both responses sampled at this iteration
            pair(t - 1, t, -2.0, -4.0, t),      # the chosen one kept from an earlier iteration
            pair(t, t, -1.0, None, t)]          # backend gave none


def test_sampler_logps_used_only_where_they_are_the_reference():
    assert sampler_reference(ctx_with(True), 1, pairs_at(1)) == [(-3.0, -4.0), None, None]
    assert sampler_reference(ctx_with(False), 1, pairs_at(1)) == [None, None, None]
    # reference pi_0: iteration 0 samples from pi_0, later iterations do not
    assert sampler_reference(ctx_with(True, "initial"), 0, pairs_at(0))[0] == (-3.0, -4.0)
    assert sampler_reference(ctx_with(True, "initial"), 2, pairs_at(2)) == [None, None, None]
