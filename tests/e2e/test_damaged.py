"""A damaged run directory on resume (issue 25): a damaged file of an unfinished step is removed, redone and
named in one log line, and the run ends as the undamaged one did; a damaged file of a finished iteration
stops the resume with one line (exit 2) naming it and the way out."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from optune.cli import main
from tests.conftest import REPO
from tests.e2e.harness import compare_trees
from tests.e2e.test_crash import RUN_RULES

TINY = str(REPO / "configs" / "tiny.yaml")
ARGS = ["train.save_steps=1"]

# what iteration 1 has left when it was stopped after the step named, before the files of later steps
AFTER_SCORING = ("metrics.json", "checkpoint", "heldout", "heldout.jsonl", "responses.jsonl", "pairs.jsonl",
                 "ref_logps.json")
AFTER_REFERENCE = ("metrics.json", "checkpoint", "heldout", "heldout.jsonl")
AFTER_CHECKPOINT = ("metrics.json", "heldout", "heldout.jsonl")
AFTER_HELDOUT = ("metrics.json", "heldout.jsonl")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["run", "-c", TINY, f"output_dir={run}", *ARGS]) == 0
    return run


def unfinished(reference: Path, root: Path, remove: tuple[str, ...]) -> Path:
    """A copy of the finished run with iteration 1 cut back to an earlier step (as a kill leaves it)."""
    run = root / "run"
    shutil.copytree(reference, run)
    (run / "summary.json").unlink()
    for name in remove:
        path = run / "iter_001" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return run


def cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def garbage(path: Path) -> None:
    path.write_bytes(b"\x00\xffnot what was written\x80")


@pytest.mark.parametrize("remove, damaged, how", [
    (AFTER_SCORING, "selection.json", garbage),
    (AFTER_SCORING, "times.json", cut),
    (AFTER_SCORING, "gen/batch_00000.jsonl", cut),
    (AFTER_SCORING, "score/batch_00000.jsonl", garbage),
    (AFTER_REFERENCE, "ref_logps.json", cut),
    (AFTER_REFERENCE, "train_state.pt", garbage),
    (AFTER_CHECKPOINT, "checkpoint/model.safetensors", cut),
    (AFTER_HELDOUT, "heldout/batch_00000.jsonl", cut),
])
def test_a_damaged_file_of_an_unfinished_step_is_redone(reference, tmp_path, capsys, remove, damaged, how):
    run = unfinished(reference, tmp_path, remove)
    path = run / "iter_001" / damaged
    how(path)
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "is damaged" in line]
    named = run / "iter_001" / ("checkpoint" if damaged.startswith("checkpoint") else damaged)
    assert len(said) == 1 and said[0].startswith(f"{named} is damaged ("), said
    compare_trees(run, reference, RUN_RULES)


@pytest.mark.parametrize("damaged, how", [
    ("responses.jsonl", cut), ("metrics.json", garbage), ("checkpoint/model.safetensors", cut),
    ("checkpoint/config.json", cut),
])
def test_a_damaged_file_of_a_finished_iteration_stops_with_one_line(reference, tmp_path, capsys, damaged, how):
    run = unfinished(reference, tmp_path, AFTER_SCORING)
    how(run / "iter_000" / damaged)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    named = run / "iter_000" / ("checkpoint" if damaged.startswith("checkpoint") else damaged)
    assert len(err) == 1 and err[0].startswith(f"optune run: error: {named} is damaged ("), err
    assert err[0].endswith(f"iteration 0 is finished, so it cannot be redone in place: remove {run / 'iter_000'} "
                           "and later iterations to redo them, or start a new run")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


@pytest.mark.slow
@pytest.mark.parametrize("damaged, how", [("prompts.jsonl", cut), ("versions.json", garbage)])
def test_a_damaged_run_wide_file_is_named_and_the_result_unchanged(reference, tmp_path, capsys, damaged, how):
    """prompts.jsonl is written again from data.train (byte for byte the same); versions.json cannot be, so it is
    left out (and the model card lists no versions); every checkpoint is the undamaged run's."""
    run = unfinished(reference, tmp_path, AFTER_SCORING)
    how(run / damaged)
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "is damaged" in line]
    assert len(said) == 1 and said[0].startswith(f"{run / damaged} is damaged ("), said
    rules = RUN_RULES
    if damaged == "versions.json":
        assert not (run / damaged).exists()
        shutil.copy(reference / damaged, run / damaged)
        rules = dataclasses.replace(RUN_RULES, skip=(*RUN_RULES.skip, "README.md"))
    compare_trees(run, reference, rules)


@pytest.mark.slow
def test_a_damaged_config_digest_is_refused_with_the_way_out(reference, tmp_path, capsys):
    """config_digest.json is what config.yaml is checked against: rewriting it could accept a changed config."""
    run = unfinished(reference, tmp_path, AFTER_SCORING)
    cut(run / "config_digest.json")
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"optune run: error: {run / 'config_digest.json'} is damaged ("), err
    assert err[0].endswith("restore it, or remove it to resume with config.yaml as it is, unchecked")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before
    (run / "config_digest.json").unlink()  # the way out it names
    assert main(["run", "--resume", str(run)]) == 0
    assert not (run / "config_digest.json").exists()  # not rewritten from a config.yaml it could not check
    shutil.copy(reference / "config_digest.json", run / "config_digest.json")
    compare_trees(run, reference, RUN_RULES)


# -- optune dpo: one iteration on fixed pairs, scored by the run's reward (score/ batch files) ----------------------
DPO_ARGS = ["train.epochs=2", "train.save_steps=1", "reward.batch_size=4"]
# what iteration 0 of a dpo run has left when it was stopped after the step named
DPO_AFTER_SCORING = ("metrics.json", "checkpoint", "heldout", "heldout.jsonl", "heldout_start", "heldout_start.jsonl",
                     "responses.jsonl", "pairs.jsonl", "ref_logps.json")
DPO_AFTER_REFERENCE = ("metrics.json", "checkpoint", "heldout", "heldout.jsonl")
DPO_AFTER_CHECKPOINT = ("metrics.json", "heldout", "heldout.jsonl")


@pytest.fixture(scope="module")
def dpo_reference(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dpo_reference")
    prefs = root / "prefs.jsonl"  # no rewards in it: the run scores them (score/batch_k.jsonl)
    prefs.write_text("".join(json.dumps({"prompt": f"Say something about item {i}.", "chosen": f"a calm answer {i}",
                                         "rejected": f"NO!! {i}"}) + "\n" for i in range(6)))
    run = root / "run"
    assert main(["dpo", "-c", TINY, f"data.train={prefs}", f"output_dir={run}", *DPO_ARGS]) == 0
    assert len(list((run / "iter_000" / "score").iterdir())) == 3  # two pairs (4 responses) each
    return run


def dpo_unfinished(reference: Path, root: Path, remove: tuple[str, ...]) -> Path:
    """A copy of the finished dpo run with its iteration 0 cut back to an earlier step (as a kill leaves it)."""
    run = root / "run"
    shutil.copytree(reference, run)
    for name in ("summary.json", "metrics.jsonl"):
        (run / name).unlink()
    for name in remove:
        path = run / "iter_000" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return run


def foreign_rows(path: Path) -> None:
    """Rows that read as JSON, with the batch's prompt ids, but not what a score batch holds."""
    path.write_text("".join(json.dumps({"prompt_id": f"pair-00000{i}", "reward": 1.0}) + "\n" for i in range(2)))


def another_state(path: Path) -> None:
    """A training state that reads, but of another model: its weights do not fit the policy's."""
    import torch

    torch.save({"step": 1, "model": {"lm_head.weight": torch.zeros(3, 2)}, "optimizer": {}, "scheduler": {},
                "totals": {}, "rows": []}, path)


def checkpoint_digest(run: Path) -> str:
    return hashlib.sha256((run / "iter_000" / "checkpoint" / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.slow
@pytest.mark.parametrize("remove, damaged, how", [
    (DPO_AFTER_SCORING, "score/batch_00000.jsonl", garbage),
    (DPO_AFTER_SCORING, "score/batch_00001.jsonl", cut),
    (DPO_AFTER_SCORING, "score/batch_00000.jsonl", foreign_rows),
    (DPO_AFTER_SCORING, "times.json", cut),
    (DPO_AFTER_REFERENCE, "ref_logps.json", cut),
    (DPO_AFTER_REFERENCE, "train_state.pt", garbage),
    (DPO_AFTER_REFERENCE, "train_state.pt", another_state),
    (DPO_AFTER_REFERENCE, "heldout_start/batch_00000.jsonl", cut),
    (DPO_AFTER_CHECKPOINT, "checkpoint/model.safetensors", cut),
    (DPO_AFTER_CHECKPOINT, "checkpoint/config.json", garbage),
])
def test_dpo_a_damaged_file_of_an_unfinished_step_is_redone(dpo_reference, tmp_path, capsys, remove, damaged, how):
    run = dpo_unfinished(dpo_reference, tmp_path, remove)
    how(run / "iter_000" / damaged)
    capsys.readouterr()
    assert main(["dpo", "--resume", str(run)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "is damaged" in line]
    named = run / "iter_000" / ("checkpoint" if damaged.startswith("checkpoint") else damaged)
    assert len(said) == 1 and said[0].startswith(f"{named} is damaged ("), said
    assert checkpoint_digest(run) == checkpoint_digest(dpo_reference)
    compare_trees(run, dpo_reference, RUN_RULES)


@pytest.mark.slow
@pytest.mark.parametrize("damaged, how", [("metrics.json", garbage), ("metrics.json", cut)])
def test_dpo_a_damaged_file_of_the_finished_iteration_stops_with_one_line(dpo_reference, tmp_path, capsys, damaged,
                                                                          how):
    run = tmp_path / "run"
    shutil.copytree(dpo_reference, run)
    how(run / "iter_000" / damaged)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    capsys.readouterr()
    assert main(["dpo", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"optune dpo: error: {run / 'iter_000' / damaged} is damaged ("), err
    assert err[0].endswith(f"remove {run / 'iter_000'} and later iterations to redo them, or start a new run")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


@pytest.mark.slow
def test_dpo_damaged_reference_log_probs_take_the_training_state_with_them(dpo_reference, tmp_path, capsys):
    """Training fills in references as it goes, so a state saved beside a damaged ref_logps.json goes too."""
    run = dpo_unfinished(dpo_reference, tmp_path, DPO_AFTER_REFERENCE)
    cut(run / "iter_000" / "ref_logps.json")
    shutil.copy(run / "iter_000" / "ref_logps.json", run / "iter_000" / "train_state.pt")  # any state: it goes
    capsys.readouterr()
    assert main(["dpo", "--resume", str(run)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "is damaged" in line]
    assert [line.split(" is damaged (")[0] for line in said] == [str(run / "iter_000" / "ref_logps.json"),
                                                                 str(run / "iter_000" / "train_state.pt")], said
    assert said[1].endswith("(its reference log-probs were damaged): removed it, training iteration 0 from its start")
    assert checkpoint_digest(run) == checkpoint_digest(dpo_reference)
    compare_trees(run, dpo_reference, RUN_RULES)


@pytest.mark.slow
@pytest.mark.parametrize("damaged", ["pairs.jsonl", "responses.jsonl"])
def test_dpo_an_unfinished_iterations_pairs_and_responses_are_written_again(dpo_reference, tmp_path, capsys,
                                                                            damaged):
    """Both are what the iteration writes before it trains, never read back while it is unfinished: a resume
    writes them again from the pairs and their score batches, and says so."""
    run = dpo_unfinished(dpo_reference, tmp_path, DPO_AFTER_REFERENCE)
    garbage(run / "iter_000" / damaged)
    capsys.readouterr()
    assert main(["dpo", "--resume", str(run)]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "is damaged" in line]
    assert len(said) == 1 and said[0].startswith(str(run / "iter_000" / damaged)), said
    assert said[0].endswith("removed it, writing it again")
    assert checkpoint_digest(run) == checkpoint_digest(dpo_reference)
    compare_trees(run, dpo_reference, RUN_RULES)
