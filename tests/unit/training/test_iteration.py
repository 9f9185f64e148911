from types import SimpleNamespace

from optune.config.run import RunConfig
from optune.pairs import Pair, Response
from optune.training.iteration import sampler_reference


def ctx_with(sampler_logprobs: bool, reference: str = "previous", processes: bool = False):
    cfg = RunConfig()
    cfg.generation.backend = "vllm"
    cfg.generation.sampler_logprobs = sampler_logprobs
    cfg.loss.reference = reference
    return SimpleNamespace(cfg=cfg, dist=SimpleNamespace(active=processes))


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


def test_training_gives_the_reference_only_where_its_start_is_the_reference():
    import torch

    from optune.training.iteration import deferred
    from optune.training.update import reference_from_training

    plain, dropout = torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    ctx = ctx_with(False)
    first = reference_from_training(40, ctx.cfg.train, ctx.cfg.seed + 1)
    assert 0 < len(first) < 40 and deferred(ctx, 1, 40, plain) == first
    assert deferred(ctx, 1, 40, dropout) == set()               # a training forward is not an evaluation one
    assert deferred(ctx_with(False, "initial"), 0, 40, plain)   # pi_0 at iteration 0
    assert deferred(ctx_with(False, "initial"), 1, 40, plain) == set()
    assert deferred(ctx_with(False, processes=True), 1, 40, plain) == set()  # each process would fill its share
