import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optune.errors import UserError
from optune.store import (
    MARKER,
    RunStore,
    WriteError,
    atomic_save_dir,
    atomic_write_text,
    check_new_dir,
    clean_temporaries,
    create_dir,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from optune.store.lock import LOCK, DirLock, is_locked


def test_batched_skips_finished_batches(tmp_path):
    store = RunStore(tmp_path)
    calls = []

    def work(items):
        calls.append(list(items))
        return [{"x": i * 10} for i in items]

    rows = store.batched(tmp_path / "b", list(range(7)), 3, work)
    assert [r["x"] for r in rows] == [0, 10, 20, 30, 40, 50, 60]
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]
    (tmp_path / "b" / "batch_00001.jsonl").unlink()  # as if killed before batch 1 was written
    calls.clear()
    rows = store.batched(tmp_path / "b", list(range(7)), 3, work)
    assert calls == [[3, 4, 5]]
    assert [r["x"] for r in rows] == [0, 10, 20, 30, 40, 50, 60]


@pytest.mark.parametrize("damage", [b'{"x": 30}\n{"x": 4', b'{"x": 30}\n', b"\xff\xfe\x00", b"[1, 2"])
def test_batched_redoes_a_damaged_batch_and_says_so(tmp_path, capsys, damage):
    """Cut short (mid-line or at a line end), not UTF-8, not JSON: the batch is removed and redone, one line."""
    store = RunStore(tmp_path)

    def work(items):
        return [{"x": i * 10} for i in items]

    store.batched(tmp_path / "b", list(range(7)), 3, work)
    (tmp_path / "b" / "batch_00001.jsonl").write_bytes(damage)
    capsys.readouterr()
    rows = store.batched(tmp_path / "b", list(range(7)), 3, work)
    assert [r["x"] for r in rows] == [0, 10, 20, 30, 40, 50, 60]
    assert read_jsonl(tmp_path / "b" / "batch_00001.jsonl") == [{"x": 30}, {"x": 40}, {"x": 50}]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path / 'b' / 'batch_00001.jsonl'} is damaged (")
    assert lines[0].endswith("removed it, redoing that batch")


def test_a_damaged_file_of_a_finished_iteration_is_one_line(tmp_path):
    store = RunStore(tmp_path)
    write_json(store.metrics(0), {"iteration": 0})
    store.metrics(1).parent.mkdir()
    store.metrics(1).write_text('{"iteration": 1, "lo')
    with pytest.raises(UserError) as err:
        store.rebuild_metrics_log()
    assert str(err.value) == (f"{tmp_path}/iter_001/metrics.json is damaged (not valid JSON at line 1); iteration 1 "
                              f"is finished, so it cannot be redone in place: remove {tmp_path}/iter_001 and later "
                              "iterations to redo them, or start a new run")


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "f.txt"

    class Boom(str):
        pass

    with pytest.raises(TypeError):
        atomic_write_text(target, 123)  # type: ignore[arg-type]
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_atomic_dir_all_or_nothing(tmp_path):
    def bad(tmp):
        (tmp / "a").write_text("x")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_save_dir(tmp_path / "ckpt", bad)
    assert not (tmp_path / "ckpt").exists()
    assert [p.name for p in tmp_path.iterdir()] == []
    atomic_save_dir(tmp_path / "ckpt", lambda tmp: (tmp / "a").write_text("y"))
    assert (tmp_path / "ckpt" / "a").read_text() == "y"


def test_clean_temporaries(tmp_path):
    (tmp_path / ".f.txt.ab3_x9zq").write_text("partial")  # tempfile's names: 8 random characters
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".checkpoint.k2j4h5g6").mkdir()
    (tmp_path / "sub" / ".checkpoint.old-a1b2c3d4").mkdir()
    (tmp_path / ".export-zz99yy88").mkdir()
    (tmp_path / MARKER).write_text("x")
    (tmp_path / LOCK).write_text("123")
    (tmp_path / "keep.json").write_text("{}")
    (tmp_path / ".gitignore").write_text("*")  # the user's hidden files stay
    (tmp_path / ".ipynb_checkpoints").mkdir()
    clean_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([MARKER, LOCK, ".gitignore", ".ipynb_checkpoints",
                                                                  "keep.json", "sub"])


def test_resume_rejects_non_run(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        RunStore.open_existing(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="not an optune run"):
        RunStore.open_existing(str(tmp_path))


def test_create_refuses_non_empty(tmp_path):
    (tmp_path / "x").write_text("1")
    with pytest.raises(UserError, match="already exists"):
        RunStore.create(tmp_path, "a: 1\n", {})


def test_metrics_jsonl_rebuilt(tmp_path):
    store = RunStore.create(tmp_path / "run", "a: 1\n", {})
    store.write_metrics(0, {"iteration": 0})
    store.write_metrics(1, {"iteration": 1})
    store.write_metrics(1, {"iteration": 1, "again": True})
    assert read_jsonl(store.root / "metrics.jsonl") == [{"iteration": 0}, {"iteration": 1, "again": True}]


# -- atomic creation, preflight of output directories, refused writes ---------------------------------------

def test_create_dir_is_all_or_nothing(tmp_path):
    target = tmp_path / "a" / "b" / "run"

    def fill(tmp):
        (tmp / "config.yaml").write_text("x: 1\n")
        raise RuntimeError("killed while filling")

    with pytest.raises(RuntimeError):
        create_dir(target, fill)
    assert list(tmp_path.iterdir()) == [], "the parents it made and its temp directory are gone"
    lock = create_dir(target, lambda tmp: (tmp / "config.yaml").write_text("x: 1\n"))
    assert lock.root == target and is_locked(target)
    assert sorted(p.name for p in target.iterdir()) == [LOCK, "config.yaml"]
    assert [p.name for p in target.parent.iterdir()] == ["run"]
    lock.release()
    assert [p.name for p in target.iterdir()] == ["config.yaml"]


def test_create_dir_takes_an_empty_directory_and_follows_the_umask(tmp_path):
    target = tmp_path / "run"
    target.mkdir()
    old = os.umask(0o027)
    try:
        lock = create_dir(target, lambda tmp: atomic_write_text(tmp / "f.txt", "x"))
    finally:
        os.umask(old)
    lock.release()
    assert (target / "f.txt").read_text() == "x"
    # the temp names are 0700/0600; the directory and file get what mkdir/open would have given
    assert target.stat().st_mode & 0o777 == 0o750
    assert (target / "f.txt").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("case,message", [
    ("file", "is a file, not a directory"),
    ("under a file", "afile is a file, not a directory"),
    ("not empty", "already exists and is not empty"),
    ("a run", "already holds an optune run; resume it with --resume"),
])
def test_check_new_dir_refuses_unusable_paths(tmp_path, case, message):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("1")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / MARKER).write_text("x")
    target = {"file": tmp_path / "afile", "under a file": tmp_path / "afile" / "sub" / "run",
              "not empty": tmp_path / "full", "a run": tmp_path / "run"}[case]
    with pytest.raises(UserError, match=message):
        check_new_dir(target)
    with pytest.raises(UserError, match=message):
        create_dir(target, lambda tmp: None)


def test_check_new_dir_refuses_a_place_it_cannot_write(tmp_path):
    with pytest.raises(UserError, match="cannot write to /sys"):  # not writable even by root
        check_new_dir(Path("/sys/optune-test-run"))
    if os.geteuid() != 0:
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o555)
        with pytest.raises(UserError, match="cannot write to"):
            check_new_dir(locked / "run")
    check_new_dir(tmp_path / "fine" / "run")
    assert not (tmp_path / "fine").exists(), "checking makes nothing"


def test_a_killed_creation_is_cleaned_up_by_the_next(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".run.new-{dead.stdout.strip()}-abcdefgh"  # killed before it took its lock
    stale.mkdir()
    (stale / "config.yaml").write_text("x")
    locked_stale = tmp_path / f".run.new-{os.getpid()}-zzzzzzzz"  # killed after: its lock file is free
    locked_stale.mkdir()
    (locked_stale / LOCK).write_text("123")
    live = tmp_path / f".run.new-{os.getpid()}-live0000"  # a creation going on now: its lock is held
    live.mkdir()
    live_lock = DirLock.acquire(live)
    create_dir(tmp_path / "run", lambda tmp: None).release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, "run"]
    live_lock.release()


def test_refused_writes_are_one_line_and_leave_nothing(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    write_json(target, {"old": True})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(WriteError, match="cannot write .*f.json: No space left on device"):
        write_json(target, {"new": True})
    with pytest.raises(WriteError, match="ckpt: No space left on device"):
        atomic_save_dir(tmp_path / "ckpt", lambda tmp: (tmp / "w").write_text("x"))
    with pytest.raises(WriteError, match="cannot create .*run: No space left on device"):
        create_dir(tmp_path / "run", lambda tmp: atomic_write_text(tmp / "config.yaml", "x"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]
    assert read_json(target) == {"old": True}


def test_atomic_save_dir_replaces_an_existing_directory_whole(tmp_path):
    atomic_save_dir(tmp_path / "ckpt", lambda tmp: (tmp / "a").write_text("1"))
    atomic_save_dir(tmp_path / "ckpt", lambda tmp: (tmp / "b").write_text("2"))
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_open_existing_locks_and_close_releases(tmp_path):
    store = RunStore.create(tmp_path / "run", "a: 1\n", {})
    with pytest.raises(UserError, match=f"in use by another optune process \\(PID {os.getpid()}\\)"):
        RunStore.open_existing(str(tmp_path / "run"))
    RunStore.open_existing(str(tmp_path / "run"), writer=False)  # readers take no lock
    store.close()
    with RunStore.open_existing(str(tmp_path / "run")) as again:
        assert is_locked(again.root)
    assert not (tmp_path / "run" / LOCK).exists()


def test_resume_finishes_a_run_an_older_version_left_without_its_marker(tmp_path):
    (tmp_path / "config.yaml").write_text("iterations: 1\n")
    with RunStore.open_existing(str(tmp_path)) as store:
        assert store.marker.is_file()
    (tmp_path / MARKER).unlink()
    (tmp_path / "iter_000").mkdir()  # with iterations it is not a half-made run: it is something else
    with pytest.raises(UserError, match="not an optune run directory"):
        RunStore.open_existing(str(tmp_path))
    (tmp_path / "iter_000").rmdir()
    (tmp_path / "config.yaml").write_text("name: my project\n")  # someone else's config.yaml: left alone
    with pytest.raises(UserError, match="not an optune run directory"):
        RunStore.open_existing(str(tmp_path))
    assert not (tmp_path / MARKER).exists()


def _resumable(tmp_path):
    store = RunStore.create(tmp_path / "run", "iterations: 2\n", {"optune": "test"})
    write_json(store.config_digest, {"sha256": "x", "keys": {"seed": 0}})
    write_jsonl(store.prompts, [{"id": "p0", "prompt": "Hi.", "history": []}])
    store.close()
    return store


@pytest.mark.parametrize("name, damage", [("versions.json", b"\xff"), ("versions.json", b"[1]"),
                                          ("prompts.jsonl", b'{"id": "p0", "pro'), ("prompts.jsonl", b"[1]\n")])
def test_resume_removes_a_damaged_versions_or_prompts_file_and_says_so(tmp_path, capsys, name, damage):
    """Neither is an input of any step: prompts.jsonl is written again from data.train, versions.json is left out."""
    store = _resumable(tmp_path)
    (store.root / name).write_bytes(damage)
    capsys.readouterr()
    RunStore.open_existing(str(store.root)).close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{store.root / name} is damaged ("), lines
    assert not (store.root / name).exists()


@pytest.mark.parametrize("damage", [b'{"sha256": "x", "ke', b'{"sha256": "x"}', b"[]", b"\x00\xff"])
def test_resume_refuses_a_damaged_config_digest(tmp_path, damage):
    """It is what config.yaml is checked against: rewriting it could accept a config.yaml that changed."""
    store = _resumable(tmp_path)
    store.config_digest.write_bytes(damage)
    with pytest.raises(UserError) as err:
        RunStore.open_existing(str(store.root))
    assert str(err.value).startswith(f"{store.config_digest} is damaged (")
    assert str(err.value).endswith("restore it, or remove it to resume with config.yaml as it is, unchecked")
    assert store.config_digest.read_bytes() == damage
    RunStore.open_existing(str(store.root), writer=False)  # a reader (export, report) does not check it


@pytest.mark.parametrize("folder, rows, problem", [
    ("score", [{"prompt_id": "a", "rewards": [1.0, 0.0]}, [1]], "line 2 is not a JSON object"),
    ("score", [{"prompt_id": "a", "rewards": [1.0, 0.0]}, {}], "line 2 has no prompt_id"),
    ("score", [{"prompt_id": "a"}, {"prompt_id": "b", "rewards": [1.0, 0.0]}], "line 1 has no 'rewards'"),
    ("score", [{"prompt_id": "a", "rewards": [1.0]}, {"prompt_id": "b", "rewards": [1, 0]}],
     "line 1's 'rewards' is not one"),
    ("score", [{"prompt_id": "b", "rewards": [1.0, 0.0]}, {"prompt_id": "a", "rewards": [1.0, 0.0]}],
     "line 1 is for prompt 'b', not 'a'"),
    ("gen", [{"prompt_id": "a", "samples": [{"text": "x", "ids": [1], "eos": True}, {"text": "y"}]},
             {"prompt_id": "b", "samples": []}], "line 1's 'samples' is not one"),
    ("heldout", [{"prompt_id": "a", "response": "x", "eos": True, "reward": "high"},
                 {"prompt_id": "b", "response": "y", "eos": False, "reward": 0}], "line 1's 'reward' is not one"),
])
def test_a_batch_whose_rows_read_but_are_not_its_folders_is_redone(tmp_path, capsys, folder, rows, problem):
    """Rows that are JSON but not what the folder holds (a hand edit, another file copied in) are named and
    redone, not a KeyError later."""
    from optune.prompt import Prompt

    store = RunStore(tmp_path)
    items = [Prompt(id="a", text="A?"), Prompt(id="b", text="B?")]
    path = store.batch_path(tmp_path / "iter_000" / folder, 0)
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    redone = []

    def work(batch):
        redone.append([p.id for p in batch])
        return [{"prompt_id": p.id, "fresh": True} for p in batch]

    assert store.batched(path.parent, items, 2, work) == [{"prompt_id": "a", "fresh": True},
                                                         {"prompt_id": "b", "fresh": True}]
    assert redone == [["a", "b"]]
    assert capsys.readouterr().err.splitlines() == [f"{path} is damaged ({problem}): removed it, redoing that batch"]


def test_a_batch_of_the_layout_that_fits_is_kept(tmp_path):
    from optune.prompt import Prompt

    store = RunStore(tmp_path)
    rows = [{"prompt_id": "a", "rewards": [0.5, 0], "parts": None}]
    path = store.batch_path(store.score_dir(0), 0)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(rows[0]) + "\n")
    assert store.batched(path.parent, [Prompt(id="a", text="A?")], 2, lambda b: pytest.fail("redone")) == rows
    assert store.batched(path.parent, [{"prompt_id": "a", "samples": []}], 2, lambda b: pytest.fail("redone")) == rows
