import pytest
import torch

from optune.config.run import TrainConfig
from optune.training.schedule import make_optimizer, steps_on_start_weights


@pytest.mark.parametrize("kw, expected", [
    # warmup: transformers' schedules start at lr 0, so step 1 still runs on the starting weights
    ({}, [0, 1, 2, 2, 2]),
    ({"lr_schedule": "cosine"}, [0, 1, 2, 2, 2]),
    ({"lr_schedule": "constant"}, [0, 1, 2, 2, 2]),
    ({"warmup_ratio": 0.0}, [0, 1, 1, 1, 1]),  # no warmup: only step 0
    ({"lr": 0.0}, [0, 1, 2, 3, 20]),           # nothing ever moves
])
def test_steps_on_start_weights(kw, expected):
    assert [steps_on_start_weights(TrainConfig(**kw), n) for n in (0, 1, 2, 3, 20)] == expected


@pytest.mark.parametrize("optimizer", ["sgd", "rmsprop", "adamw"])
def test_a_warmup_first_step_leaves_the_weights_as_they_were(optimizer):
    """What steps_on_start_weights relies on, with the optimizers as train_iteration builds them."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    cfg = TrainConfig(optimizer=optimizer, lr=1e-2, warmup_ratio=0.5)
    opt, sched = make_optimizer(model, cfg, total_steps=4)
    if optimizer == "adamw":
        opt.param_groups[0]["weight_decay"] = 0.1  # decoupled decay scales by lr too
    before = [p.detach().clone() for p in model.parameters()]
    for step in range(2):
        model(torch.randn(5, 4)).pow(2).sum().backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        same = all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
        assert same == (step + 1 < steps_on_start_weights(cfg, 4)), step
