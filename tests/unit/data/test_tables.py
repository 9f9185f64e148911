"""Tabular sources (optune.data.tables) on Parquet/Arrow files and datasets folders written here.

`hf:NAME[:SPLIT]` goes through `datasets.load_dataset(NAME, split=SPLIT)`; NAME a local folder takes the same
path as a hub name, which is how it is tested without a network.
"""

import builtins

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optune.data.tables import is_table, read_rows
from optune.errors import UserError

ROWS = [{"id": f"r{i}", "prompt": [{"role": "user", "content": f"question {i}"}]} for i in range(5)]


def parquet(path, rows=ROWS):
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=2)  # several row groups
    return str(path)


def test_parquet_rows_in_order_with_locations(tmp_path):
    src = parquet(tmp_path / "p.parquet")
    got = list(read_rows(src))
    assert [row for _, row in got] == ROWS
    assert [where for where, _ in got][:2] == [f"{src}[0]", f"{src}[1]"]
    assert [row["id"] for _, row in read_rows(src, limit=3)] == ["r0", "r1", "r2"]


def test_arrow_file_and_stream(tmp_path):
    table = pa.Table.from_pylist(ROWS)
    with pa.OSFile(str(tmp_path / "f.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    with pa.OSFile(str(tmp_path / "s.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    for name in ("f.arrow", "s.arrow"):
        assert [row for _, row in read_rows(str(tmp_path / name))] == ROWS


def test_save_to_disk_folders(tmp_path):
    ds = datasets.Dataset.from_list(ROWS)
    ds.save_to_disk(str(tmp_path / "one"))
    assert [row for _, row in read_rows(str(tmp_path / "one"))] == ROWS
    datasets.DatasetDict({"train": ds, "test": ds.select([4])}).save_to_disk(str(tmp_path / "dict"))
    assert len(list(read_rows(str(tmp_path / "dict")))) == 5  # the train split
    assert [row["id"] for _, row in read_rows(f"hf:{tmp_path / 'dict'}:test")] == ["r4"]
    with pytest.raises(UserError, match=r"has no split 'validation'; its splits: train, test"):
        list(read_rows(f"hf:{tmp_path / 'dict'}:validation"))


def test_hf_path_on_a_local_data_folder(tmp_path):
    """The hub path (datasets.load_dataset with a split), on a folder laid out like a hub data set."""
    (tmp_path / "set" / "data").mkdir(parents=True)
    parquet(tmp_path / "set" / "data" / "train-00000-of-00001.parquet")
    parquet(tmp_path / "set" / "data" / "test-00000-of-00001.parquet", ROWS[:2])
    assert [row for _, row in read_rows(f"hf:{tmp_path / 'set'}")] == ROWS
    test = list(read_rows(f"hf:{tmp_path / 'set'}:test"))
    assert [row for _, row in test] == ROWS[:2] and test[1][0] == f"hf:{tmp_path / 'set'}:test[1]"
    assert [row for _, row in read_rows(str(tmp_path / "set"))] == ROWS  # a plain folder: the same, train split
    with pytest.raises(UserError, match="cannot load data set .* split nope"):
        list(read_rows(f"hf:{tmp_path / 'set'}:nope"))


def test_is_table(tmp_path):
    assert is_table("hf:org/name") and is_table("x.parquet") and is_table("x.ARROW") and is_table(str(tmp_path))
    assert not is_table("prompts.jsonl") and not is_table("verifiable:train")


def test_missing_and_broken_sources(tmp_path):
    with pytest.raises(UserError, match=r"prompt set .*nope\.parquet does not exist"):
        list(read_rows(str(tmp_path / "nope.parquet"), "prompt set"))
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(UserError, match=r"cannot read prompt set .*bad\.parquet"):
        list(read_rows(str(tmp_path / "bad.parquet"), "prompt set"))
    (tmp_path / "bad.arrow").write_text("not arrow")
    with pytest.raises(UserError, match=r"cannot read prompt set .*bad\.arrow as Arrow"):
        list(read_rows(str(tmp_path / "bad.arrow"), "prompt set"))


def test_missing_packages_name_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def without(*names):
        def fake(name, *args, **kwargs):
            if name.split(".")[0] in names:
                raise ImportError(f"no {name}")
            return real_import(name, *args, **kwargs)
        return fake

    src = parquet(tmp_path / "p.parquet")
    monkeypatch.setattr(builtins, "__import__", without("pyarrow"))
    with pytest.raises(UserError, match=r"needs the 'pyarrow' package: pip install 'optune\[hf-datasets\]'"):
        list(read_rows(src))
    monkeypatch.setattr(builtins, "__import__", without("datasets"))
    with pytest.raises(UserError, match=r"needs the 'datasets' package: pip install 'optune\[hf-datasets\]'"):
        list(read_rows("hf:org/name"))
