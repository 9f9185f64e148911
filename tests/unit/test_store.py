import pytest

from optune.errors import UserError
from optune.store import MARKER, RunStore, atomic_save_dir, atomic_write_text, clean_temporaries, read_jsonl


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
    (tmp_path / ".f.txt.abc").write_text("partial")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".ckpt.tmp").mkdir()
    (tmp_path / MARKER).write_text("x")
    (tmp_path / "keep.json").write_text("{}")
    clean_temporaries(tmp_path)
    assert sorted(p.name for p in tmp_path.rglob("*")) == [MARKER, "keep.json", "sub"]


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
