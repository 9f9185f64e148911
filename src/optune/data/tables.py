"""Rows of tabular data sets: Parquet and Arrow files, `datasets` folders, and `hf:NAME[:SPLIT]`.

The sets people tune on (UltraFeedback, UltraChat, trl-lib's prompt and preference sets) ship as Parquet or
Arrow through the `datasets` library. A source is one of:

  data.parquet, data.arrow (.feather)  read with pyarrow, in record batches (no copy into a cache)
  FOLDER written by save_to_disk        `datasets.load_from_disk` (its "train" split for a DatasetDict)
  FOLDER of data files                  `datasets.load_dataset(FOLDER, split="train")`, as for the hub
  hf:NAME[:SPLIT]                       `datasets.load_dataset(NAME, split=SPLIT)` ("train" if none): a hub
                                        dataset where the hub (or its local cache) is reachable; NAME may also
                                        be a local folder, which is how the hub path is tested offline

Every row comes with its location, `SOURCE[i]` (i counts rows from 0, as `dataset[i]` does), so the caller's
error about a row's content can name it, as the JSON readers' `file:line` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from optune import hub
from optune.data.readers import Located
from optune.errors import UserError

TABLE_SUFFIXES = (".parquet", ".arrow", ".feather")
EXTRA = "pip install 'optune[hf-datasets]'"
_SAVED_MARKERS = ("dataset_dict.json", "state.json")  # what save_to_disk writes
_BATCH_ROWS = 1024


def is_table(source: str) -> bool:
    """Whether `source` names tabular data (this module) rather than a JSON/JSONL file."""
    path = Path(source).expanduser()
    return source.startswith("hf:") or path.suffix.lower() in TABLE_SUFFIXES or path.is_dir()


def read_rows(source: str, kind: str = "data set", limit: int | None = None) -> Iterator[Located]:
    """The rows of a tabular source as plain dicts, each with its location; at most `limit` rows.

    `kind` ("prompt set") names the source in errors. A missing source or package fails on the first row asked
    for; rows are read as they are asked for, so a limit on a large set reads only what it needs.
    """
    if source.startswith("hf:"):
        name, _, split = source[3:].partition(":")
        rows = _hf_rows(name, split or "train", kind)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise UserError(f"{kind} {source} does not exist")
        if path.is_dir():
            rows = _folder_rows(path, kind)
        elif path.suffix.lower() == ".parquet":
            rows = _parquet_rows(path, kind)
        else:
            rows = _arrow_rows(path, kind)
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            return
        yield f"{source}[{i}]", row


def require_pyarrow(purpose: str):
    """pyarrow, or one clear error saying what needs it and which extra installs it."""
    try:
        import pyarrow  # optional dependency, imported only when used
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError:
        raise UserError(f"{purpose} needs the 'pyarrow' package: {EXTRA}") from None
    return pyarrow


def _datasets(source: str):
    try:
        import datasets  # optional dependency, imported only when used
    except ImportError:
        raise UserError(f"reading {source} needs the 'datasets' package: {EXTRA}") from None
    return datasets


def _batches_rows(batches) -> Iterator[dict]:
    for batch in batches:
        yield from batch.to_pylist()


def _parquet_rows(path: Path, kind: str) -> Iterator[dict]:
    pa = require_pyarrow(f"reading the Parquet {kind} {path}")
    try:
        reader = pa.parquet.ParquetFile(path)
        yield from _batches_rows(reader.iter_batches(batch_size=_BATCH_ROWS))
    except (OSError, pa.ArrowException) as err:  # a damaged footer, or a damaged page met as it is read
        raise UserError(f"cannot read {kind} {path}: {_first_line(err)}") from None


def _arrow_rows(path: Path, kind: str) -> Iterator[dict]:
    """An Arrow IPC file, or the IPC stream `datasets` writes into its .arrow shards."""
    pa = require_pyarrow(f"reading the Arrow {kind} {path}")
    try:
        source = pa.memory_map(str(path))
        try:
            reader = pa.ipc.open_file(source)
            batches = (reader.get_batch(i) for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:
            source.seek(0)
            batches = pa.ipc.open_stream(source)
        yield from _batches_rows(batches)
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"cannot read {kind} {path} as Arrow: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def _folder_rows(path: Path, kind: str) -> Iterator[dict]:
    if any((path / marker).is_file() for marker in _SAVED_MARKERS):
        yield from _saved_rows(path, "train", kind)
    else:
        yield from _hf_rows(str(path), "train", kind)


def _saved_rows(path: Path, split: str, kind: str) -> Iterator[dict]:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk` (then its `split`)."""
    datasets = _datasets(str(path))
    try:
        data = datasets.load_from_disk(str(path))
    except Exception as err:  # any failure here means: not a readable datasets folder
        raise UserError(f"cannot read {kind} {path}: {err}") from None
    if isinstance(data, datasets.DatasetDict):
        if split not in data:
            raise UserError(f"{kind} {path} has no split {split!r}; its splits: {', '.join(data)} "
                            f"(choose one with hf:{path}:SPLIT)")
        data = data[split]
    yield from data


def _hf_rows(name: str, split: str, kind: str) -> Iterator[dict]:
    """`datasets.load_dataset(name, split=split)`: a hub dataset, or a local folder (of data or save_to_disk)."""
    local = Path(name).expanduser()
    if local.is_dir() and any((local / marker).is_file() for marker in _SAVED_MARKERS):
        yield from _saved_rows(local, split, kind)
        return
    datasets = _datasets(f"hf:{name}")
    online = local.is_dir() or hub.online()  # unreachable: offline mode, so the cache or one line at once
    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as err:  # hub, network, name and split errors all mean: cannot read it
        message = f"not a local folder, and {hub.UNREACHABLE}" if not online else _first_line(err)
        raise UserError(f"cannot load {kind} {name} split {split}: {message}") from None
    yield from data
