"""The run directory: every file is written atomically, so a killed run leaves each file complete or absent.

Layout (RUN = the run directory, t = iteration, zero-padded to 3 digits):
  RUN/.optune-run                 marker: this directory is an optune run
  RUN/config.yaml                 resolved config;  RUN/versions.json  package versions
  RUN/metrics.jsonl               one JSON object per finished iteration (rebuilt from iter_*/metrics.json)
  RUN/iter_t/selection.json       ids of the prompts regenerated at t
  RUN/iter_t/gen/batch_k.jsonl    generated responses, one file per finished generation batch
  RUN/iter_t/score/batch_k.json   rewards of the responses in gen/batch_k
  RUN/iter_t/responses.jsonl      every prompt's current two responses after this iteration's regeneration
  RUN/iter_t/pairs.jsonl          the pairs trained on (chosen/rejected rewards, weight) and the dropped ties
  RUN/iter_t/ref_logps.json       reference log-probs of the pairs (computed once)
  RUN/iter_t/train_state.pt       training state every train.save_steps steps (deleted once checkpoint/ exists)
  RUN/iter_t/checkpoint/          pi_{t+1}: safetensors + tokenizer, loadable by transformers
  RUN/iter_t/heldout/batch_k.jsonl, heldout.jsonl   held-out responses of pi_{t+1} and their rewards
  RUN/iter_000/heldout_start.jsonl                  the same for pi_0
  RUN/iter_t/metrics.json         written last: its presence means iteration t is finished
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from optune.errors import UserError

MARKER = ".optune-run"
_WRITER = True


def set_writer(is_writer: bool) -> None:
    """In a multi-process run only the main process writes: the others' writes become no-ops (optune.distributed)."""
    global _WRITER
    _WRITER = is_writer


def is_writer() -> bool:
    return _WRITER


def atomic_write(path: Path, write: Callable[[IO], None], text: bool = False) -> None:
    """`write(f)` into a temp file in the same directory (binary, or UTF-8 text), fsync, then rename over the target."""
    if not _WRITER:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), text=True)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def atomic_save_dir(target: Path, save: Callable[[Path], None]) -> None:
    """Fill a temp directory with `save(tmp)` and rename it to target; a partial directory never appears."""
    if not _WRITER:
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save(tmp)
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_temporaries(root: Path) -> None:
    """Remove leftovers of writes interrupted by a kill (hidden temp files and directories)."""
    if not _WRITER:
        return
    for path in root.rglob(".*"):
        if path.name == MARKER or not path.exists():
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()


class RunStore:
    """Paths and atomic reads/writes of one run directory."""

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def open_existing(cls, root: str) -> RunStore:
        path = Path(root)
        if not path.is_dir():
            raise UserError(f"cannot resume {root}: no such directory")
        if not (path / MARKER).is_file() or not (path / "config.yaml").is_file():
            raise UserError(f"cannot resume {root}: not an optune run directory (no {MARKER} or config.yaml)")
        store = cls(path)
        clean_temporaries(path)
        return store

    @classmethod
    def create(cls, root: Path, config_yaml: str, versions: dict) -> RunStore:
        if root.exists() and any(root.iterdir()):
            raise UserError(f"output directory {root} already exists and is not empty; use --resume {root}")
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root)
        atomic_write_text(root / "config.yaml", config_yaml)
        write_json(root / "versions.json", versions)
        atomic_write_text(root / MARKER, "optune run directory\n")
        return store

    def iter_dir(self, t: int) -> Path:
        return self.root / f"iter_{t:03d}"

    def checkpoint(self, t: int) -> Path:
        return self.iter_dir(t) / "checkpoint"

    def finished(self, t: int) -> bool:
        return (self.iter_dir(t) / "metrics.json").is_file()

    def batched(self, folder: Path, items: list, batch_size: int, work: Callable[[list], list[dict]],
                progress=None) -> list[dict]:
        """Run `work` over items in fixed batches, one atomic file per finished batch; skip finished ones.

        The batch boundaries depend only on (items, batch_size), so a resumed run finds the same batches.
        """
        rows: list[dict] = []
        for k, start in enumerate(range(0, len(items), batch_size)):
            path = folder / f"batch_{k:05d}.jsonl"
            if path.is_file():
                out = read_jsonl(path)
            else:
                out = work(items[start:start + batch_size])
                write_jsonl(path, out)
            rows.extend(out)
            if progress is not None:
                progress.update(len(items[start:start + batch_size]))
        return rows

    def write_metrics(self, t: int, metrics: dict) -> None:
        write_json(self.iter_dir(t) / "metrics.json", metrics)
        rows = [read_json(self.iter_dir(i) / "metrics.json") for i in range(t + 1) if self.finished(i)]
        write_jsonl(self.root / "metrics.jsonl", rows)
