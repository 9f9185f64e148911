"""A saved training state is applied whole or not at all: one that does not read or does not fit the model and
optimizer (another shape, another set of weights) is named in one line, removed, and training starts over."""

import pytest
import torch

from optune.config.run import TrainConfig
from optune.training.schedule import make_optimizer
from optune.training.state import load_train_state, save_train_state

CFG = TrainConfig(optimizer="adamw", lr=1e-2, warmup_ratio=0.0)


def trained(width: int, steps: int = 2, seed: int = 0):
    """A small model with its optimizer and schedule after `steps` updates."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 2))
    optimizer, scheduler = make_optimizer(model, CFG, total_steps=10)
    for _ in range(steps):
        model(torch.randn(3, 4)).pow(2).sum().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, optimizer, scheduler


def snapshot(model, optimizer, scheduler):
    return ({k: v.clone() for k, v in model.state_dict().items()}, repr(optimizer.state_dict()),
            repr(scheduler.state_dict()))


def same(a, b) -> bool:
    return a[0].keys() == b[0].keys() and all(torch.equal(a[0][k], b[0][k]) for k in a[0]) and a[1:] == b[1:]


def test_a_saved_state_is_loaded(tmp_path):
    path = tmp_path / "train_state.pt"
    saved = trained(8)
    save_train_state(path, *saved, step=2, totals={"loss": 0.5}, rows=[{"step": 0}, {"step": 1}])
    fresh = trained(8, steps=0, seed=1)
    assert load_train_state(path, *fresh) == (2, {"loss": 0.5}, [{"step": 0}, {"step": 1}])
    assert same(snapshot(*fresh), snapshot(*saved)) and path.is_file()


def wrong_width(state: dict) -> None:
    state.update(model=trained(6)[0].state_dict())


def wrong_optimizer_shape(state: dict) -> None:
    state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3, 3)


def fewer_optimizer_weights(state: dict) -> None:
    state["optimizer"]["param_groups"][0]["params"].pop()


def missing_weight(state: dict) -> None:
    state["model"].pop("1.bias")


def another_schedule(state: dict) -> None:
    state["scheduler"] = {"last_epoch": 2}


def bad_rng(state: dict) -> None:
    state["rng"] = torch.zeros(3)


def no_step(state: dict) -> None:
    del state["step"]


@pytest.mark.parametrize("spoil, problem", [
    (wrong_width, "weight '0.weight' is [6, 4] where the model's is [8, 4]"),
    (wrong_optimizer_shape, "its optimizer's 'exp_avg' is [3, 3] where the weight's is [8, 4]"),
    (fewer_optimizer_weights, "its optimizer is for another set of weights"),
    (missing_weight, "weight '1.bias' is not in it"),
    (another_schedule, "its learning-rate schedule is another kind"),
    (bad_rng, "its random number generator state is not one"),
    (no_step, "no 'step' in it"),
])
def test_a_state_that_does_not_fit_is_named_and_nothing_is_applied(tmp_path, capsys, spoil, problem):
    path = tmp_path / "train_state.pt"
    model, optimizer, scheduler = trained(8)
    state = {"step": 2, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "totals": {}, "rows": []}
    spoil(state)
    torch.save(state, path)
    fresh = trained(8, steps=1, seed=1)
    before, rng = snapshot(*fresh), torch.get_rng_state()
    assert load_train_state(path, *fresh) == (0, {}, [])
    assert capsys.readouterr().err.splitlines() == [
        f"{path} is damaged ({problem}): removed it, training this iteration from its start"]
    assert not path.exists()
    assert same(snapshot(*fresh), before) and torch.equal(torch.get_rng_state(), rng)  # nothing half-loaded


@pytest.mark.parametrize("content", [b"\x00\xffnot a state", b"", b"PK\x03\x04"])
def test_a_state_that_does_not_read_is_named(tmp_path, capsys, content):
    path = tmp_path / "train_state.pt"
    path.write_bytes(content)
    assert load_train_state(path, *trained(8, steps=0)) == (0, {}, [])
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path} is damaged (") and not path.exists(), err


def test_resume_refuses_a_state_past_its_plan(tmp_path, capsys):
    from optune.training.state import resume

    path = tmp_path / "train_state.pt"
    save_train_state(path, *trained(8), step=5, totals={}, rows=[])
    fresh = trained(8, steps=0, seed=1)
    before = snapshot(*fresh)
    assert resume(path, *fresh, plan=[[[0]]] * 3, progress=None, log=None, then="training iteration 1 from its "
                  "start") == (0, {}, [])
    assert capsys.readouterr().err.splitlines() == [
        f"{path} is damaged (it is at step 5 of a plan of 3): removed it, training iteration 1 from its start"]
    assert same(snapshot(*fresh), before)
