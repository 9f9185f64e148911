"""Bradley-Terry training on a tiny random BERT: the loss goes down, resume reproduces, export works."""

from __future__ import annotations

import json
import os

import pytest
import torch

from optune.cli import main
from optune.errors import UserError
from optune.reward.hf import load_reward_model, score_texts
from optune.rewardmodel.config import RewardTrainConfig
from optune.rewardmodel.train import STATE_FILE, config_for_resume, epoch_batches, train_reward_model


def _cfg(tiny_bert, pair_files, out, **kw) -> RewardTrainConfig:
    train, heldout = pair_files
    base = dict(backbone=str(tiny_bert), train_files=[str(train)], eval_files=[str(heldout)], output_dir=str(out),
                max_length=32, batch_size=8, lr=3e-3, warmup_ratio=0.0, eval_every=5, save_every=2, stats_max_pairs=16)
    base.update(kw)
    return RewardTrainConfig(**base)


def _log(tmp):
    return [json.loads(line) for line in open(os.path.join(tmp, "train_log.jsonl"))]


@pytest.mark.slow
def test_training_lowers_loss_and_exports_a_loadable_model(tiny_bert, pair_files, tmp_path):
    out = tmp_path / "rm"
    result = train_reward_model(_cfg(tiny_bert, pair_files, out, epochs=4.0), log=lambda s: None)
    log = _log(out)
    assert log[0]["step"] == 5 and log[-1]["step"] == 24  # 48 pairs / 8 = 6 steps per epoch
    assert log[-1]["eval/loss"] < log[0]["eval/loss"] < 0.75
    assert log[-1]["eval/accuracy"] == 1.0 and result["eval/accuracy"] == 1.0
    assert not (out / STATE_FILE).exists()
    model, tok, stats = load_reward_model(str(out))
    assert stats is not None and stats.std > 0
    good, bad = score_texts(model, tok, ["please help me"] * 2,
                            ["good great helpful answer", "bad awful useless answer"])
    assert good > bad
    with pytest.raises(UserError, match="already holds a trained reward model"):
        train_reward_model(_cfg(tiny_bert, pair_files, out), log=lambda s: None)


class _Interrupt(Exception):
    pass


def full_and_cut_at_5(tiny_bert, pair_files, tmp_path, **kw):
    """(an uninterrupted run's folder, the same run's folder stopped at step 5)."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    train_reward_model(_cfg(tiny_bert, pair_files, full, **kw), log=lambda s: None)

    def stop_at_5(step):
        if step == 5:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        train_reward_model(_cfg(tiny_bert, pair_files, cut, **kw), log=lambda s: None, on_step=stop_at_5)
    return full, cut


@pytest.mark.slow
def test_resume_after_interruption_matches_uninterrupted_run(tiny_bert, pair_files, tmp_path):
    kw = dict(max_steps=7, eval_every=100, save_every=3)
    full, cut = full_and_cut_at_5(tiny_bert, pair_files, tmp_path, **kw)
    assert (cut / STATE_FILE).exists()
    assert torch.load(cut / STATE_FILE, weights_only=False)["step"] == 3
    with pytest.raises(UserError, match="unfinished run; resume it"):
        train_reward_model(_cfg(tiny_bert, pair_files, cut, **kw), log=lambda s: None)
    messages = []
    train_reward_model(config_for_resume(str(cut)), resume=True, log=messages.append)
    assert "resumed at step 3 of 7" in messages
    a, _, _ = load_reward_model(str(full))
    b, _, _ = load_reward_model(str(cut))
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(pa, pb, atol=1e-6), name
    assert json.loads((cut / "reward_stats.json").read_text())["mean"] == pytest.approx(
        json.loads((full / "reward_stats.json").read_text())["mean"], abs=1e-6)


def test_resume_without_checkpoint_is_an_error(tiny_bert, pair_files, tmp_path):
    with pytest.raises(UserError, match="no reward_config.yaml: it is not a reward training directory"):
        train_reward_model(_cfg(tiny_bert, pair_files, tmp_path / "x"), resume=True)


def test_epoch_batches_cover_every_pair_once_and_are_deterministic():
    encoded = [([0] * (i % 11 + 1), [0] * (i % 5 + 1)) for i in range(50)]
    batches = epoch_batches(encoded, 8, seed=3, epoch=1)
    assert sorted(i for b in batches for i in b) == list(range(50))
    assert batches == epoch_batches(encoded, 8, seed=3, epoch=1)
    assert batches != epoch_batches(encoded, 8, seed=3, epoch=2)


def test_empty_train_files_is_an_error(tiny_bert, pair_files, tmp_path):
    with pytest.raises(UserError, match="train_files is empty"):
        train_reward_model(_cfg(tiny_bert, pair_files, tmp_path / "x", train_files=[]), log=lambda s: None)


def test_unfinished_run_of_an_older_version_is_refused_with_one_line(tiny_bert, pair_files, tmp_path):
    """Before the shared training state, an unfinished run kept resume.pt: it cannot be continued now."""
    out = tmp_path / "old"
    out.mkdir()
    (out / "reward_config.yaml").write_text(f"backbone: {tiny_bert}\n")
    torch.save({"state": {"step": 3}, "torch_rng": torch.get_rng_state()}, out / "resume.pt")
    for resume in (True, False):
        with pytest.raises(UserError, match="unfinished run of an older optune \\(resume.pt\\)"):
            train_reward_model(_cfg(tiny_bert, pair_files, out), resume=resume, log=lambda s: None)


@pytest.mark.slow
def test_a_killed_eval_line_is_not_doubled(tiny_bert, pair_files, tmp_path):
    """train_log.jsonl is rewritten from the saved state: an evaluation logged after the last save and
    redone on resume appears once (here: eval at step 4, last save at step 3, stop at step 5)."""
    full, cut = full_and_cut_at_5(tiny_bert, pair_files, tmp_path, max_steps=7, eval_every=4, save_every=3)
    assert [row["step"] for row in _log(cut)] == [4]
    train_reward_model(config_for_resume(str(cut)), resume=True, log=lambda s: None)
    strip = [[{k: v for k, v in row.items() if not k.startswith("time/")} for row in _log(d)] for d in (cut, full)]
    assert [row["step"] for row in strip[0]] == [4, 7] and strip[0] == strip[1]
    assert (cut / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()


@pytest.fixture
def trained_and_cut(tiny_bert, pair_files, tmp_path):
    """A finished run, and the same run stopped at step 5 (its state saved at step 3)."""
    return full_and_cut_at_5(tiny_bert, pair_files, tmp_path, max_steps=7, eval_every=4, save_every=3)


def _garbage(path):
    path.write_bytes(b"\x00\xffnot what was written\x80")


def _past_the_plan(path):
    state = torch.load(path, weights_only=False)
    torch.save({**state, "step": 99}, path)


def _foreign_sums(path):
    state = torch.load(path, weights_only=False)
    torch.save({**state, "totals": {"loss": 0.5}}, path)


def _other_weights(path):
    state = torch.load(path, weights_only=False)
    state["model"] = {k: v[..., :1] if v.dim() else v for k, v in state["model"].items()}
    torch.save(state, path)


@pytest.mark.slow
@pytest.mark.parametrize("spoil, problem", [
    (_garbage, "UnpicklingError"), (_past_the_plan, "it is at step 99 of a plan of 7"),
    (_foreign_sums, "its running sums are not this trainer's"), (_other_weights, "weight "),
])
def test_a_damaged_state_is_named_and_training_starts_over(trained_and_cut, capsys, spoil, problem):
    full, cut = trained_and_cut
    spoil(cut / STATE_FILE)
    capsys.readouterr()
    messages = []
    train_reward_model(config_for_resume(str(cut)), resume=True, log=messages.append)
    said = [line for line in capsys.readouterr().err.splitlines() if "is damaged" in line]
    assert len(said) == 1 and said[0].startswith(f"{cut / STATE_FILE} is damaged ({problem}"), said
    assert said[0].endswith("): removed it, training from step 0")
    assert not any(m.startswith("resumed at step") for m in messages)
    assert (cut / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()
    strip = [[{k: v for k, v in row.items() if not k.startswith("time/")} for row in _log(d)] for d in (cut, full)]
    assert strip[0] == strip[1]


@pytest.mark.parametrize("content, problem", [
    (b"\x00\xff", "not UTF-8 text"), (b'{"mean": 1', "not valid JSON at line 1"), (b"[]", "not a JSON object"),
    (b'{"mean": 0.5}', "no number 'std' in it"),
])
def test_a_damaged_stats_file_of_a_finished_run_is_refused_with_the_way_out(tiny_bert, pair_files, tmp_path,
                                                                            capsys, content, problem):
    out = tmp_path / "rm"
    out.mkdir()
    (out / "reward_config.yaml").write_text(f"backbone: {tiny_bert}\ntrain_files: [{pair_files[0]}]\n")
    (out / "reward_stats.json").write_bytes(content)
    before = sorted(out.iterdir())
    capsys.readouterr()
    assert main(["reward", "train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"optune reward: error: {out / 'reward_stats.json'} is damaged ({problem}); it marks the reward "
                   "model finished and holds its score mean and std: restore it, or remove it and run optune reward "
                   f"train --resume {out} to train the model again from step 0"]
    assert sorted(out.iterdir()) == before


@pytest.mark.slow
def test_the_way_out_of_a_damaged_stats_file_trains_the_same_model(tiny_bert, pair_files, tmp_path):
    out = tmp_path / "rm"
    cfg = _cfg(tiny_bert, pair_files, out, max_steps=3, eval_every=100, save_every=2)
    first = train_reward_model(cfg, log=lambda s: None)
    weights = (out / "model.safetensors").read_bytes()
    (out / "reward_stats.json").write_text('{"mean": ')
    (out / "reward_stats.json").unlink()  # the way out it names
    again = train_reward_model(config_for_resume(str(out)), resume=True, log=lambda s: None)
    assert (out / "model.safetensors").read_bytes() == weights
    assert {k: v for k, v in again.items() if k != "train_time_s"} == {k: v for k, v in first.items()
                                                                        if k != "train_time_s"}


@pytest.mark.parametrize("content, problem", [
    (b"\x00\xff", "not UTF-8 text"), (b"backbone: [\n", "not valid YAML at line 2"), (b"", "not a YAML mapping"),
    (b"lr: 0.1\n", "no 'backbone' in it"),
])
def test_a_damaged_saved_config_is_refused_with_one_line(tmp_path, capsys, content, problem):
    """Filled in with defaults, a damaged config would resume another training than the one saved."""
    out = tmp_path / "rm"
    out.mkdir()
    (out / "reward_config.yaml").write_bytes(content)
    capsys.readouterr()
    assert main(["reward", "train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"optune reward: error: {out / 'reward_config.yaml'} is damaged ({problem}); it is the config the "
                   "run was started with, which a resume continues: restore it, or train again into a new output_dir"]
