from types import SimpleNamespace

from optune.choices import Reference
from optune.config.run import RunConfig
from optune.pairs import Pair, Response
from optune.training.reference import ReferenceSource, reference_from_training


def source_with(sampler_logprobs: bool, reference: str = "previous", processes: bool = False) -> ReferenceSource:
    cfg = RunConfig()
    return ReferenceSource(None, Reference(reference), "", cfg.policy, cfg.train, 0, sampler_logprobs, cfg.seed,
                           SimpleNamespace(active=processes))


def pair(t_chosen, t_rejected, logp_chosen, logp_rejected, t):
    return Pair("p", [1], Response("a", [2], True, 1.0, t_chosen, logp_chosen),
                Response("b", [3], True, 0.0, t_rejected, logp_rejected))


def pairs_at(t):
    return [pair(t, t, -3.0, -4.0, t),          # both responses sampled at this iteration
            pair(t - 1, t, -2.0, -4.0, t),      # the chosen one kept from an earlier iteration
            pair(t, t, -1.0, None, t)]          # backend gave none


def test_sampler_logps_used_only_where_they_are_the_reference():
    assert source_with(True).sampled(1, pairs_at(1)) == [(-3.0, -4.0), None, None]
    assert source_with(False).sampled(1, pairs_at(1)) == [None, None, None]
    # reference pi_0: iteration 0 samples from pi_0, later iterations do not
    assert source_with(True, "initial").sampled(0, pairs_at(0))[0] == (-3.0, -4.0)
    assert source_with(True, "initial").sampled(2, pairs_at(2)) == [None, None, None]


def test_pi_t_is_the_reference():
    assert all(Reference.PREVIOUS.is_current(t) for t in range(3))
    assert [Reference.INITIAL.is_current(t) for t in range(3)] == [True, False, False]


def test_training_gives_the_reference_only_where_its_start_is_the_reference():
    import torch

    plain, dropout = torch.nn.Linear(2, 2), torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.1))
    source = source_with(False)
    first = reference_from_training(40, source.train, source.seed + 1)
    assert 0 < len(first) < 40 and source.deferred(1, 40, plain) == first
    assert source.deferred(1, 40, dropout) == set()               # a training forward is not an evaluation one
    assert source_with(False, "initial").deferred(0, 40, plain)   # pi_0 at iteration 0
    assert source_with(False, "initial").deferred(1, 40, plain) == set()
    assert source_with(False, processes=True).deferred(1, 40, plain) == set()  # each process would fill its share


def test_take_fills_only_missing_references_and_flush_writes_once():
    import math

    import torch

    from optune.training.reference import References

    written = []
    ref = References.of([-1.0, math.nan, -3.0], [-4.0, math.nan, -6.0], record=lambda r: written.append(r.missing()))
    idx = torch.tensor([0, 1])
    policy_c = torch.tensor([-9.0, -2.0], requires_grad=True)
    got_c, got_r = ref.take(idx, policy_c, torch.tensor([-9.0, -5.0]))
    assert got_c.tolist() == [-1.0, -2.0] and got_r.tolist() == [-4.0, -5.0] and not got_c.requires_grad
    assert ref.missing() == set() and ref.chosen.tolist() == [-1.0, -2.0, -3.0]
    ref.flush()
    ref.flush()  # nothing filled since: not written again
    assert written == [set()]
    ref.take(torch.tensor([2]), torch.tensor([0.0]), torch.tensor([0.0]))  # nothing missing there
    ref.flush()
    assert len(written) == 1 and ref.chosen.tolist()[2] == -3.0
