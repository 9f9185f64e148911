"""Atomic files, and the run directory: a killed run leaves each file complete or absent.

Every file a user keeps (run directories, reward models, reports, exports) is written by `atomic_write`:
a temp file in the same directory, fsync, rename. A kill leaves at most a hidden temp file, which
`clean_temporaries` removes on resume. `RunStore` names every file of a run directory; only its writer
process writes (the main one in a multi-process run, optune.distributed).

Layout (RUN = the run directory, t = iteration, zero-padded to 3 digits):
  RUN/.optune-run                 marker: this directory is an optune run
  RUN/config.yaml                 resolved config
  RUN/versions.json               package versions
  RUN/prompts.jsonl               the training prompts' texts ({"id", "prompt", "history"}), for `optune export`
  RUN/metrics.jsonl               one JSON object per finished iteration (rebuilt from iter_*/metrics.json)
  RUN/iter_t/selection.json       ids of the prompts regenerated at t
  RUN/iter_t/gen/batch_k.jsonl    generated responses, one file per finished generation batch
  RUN/iter_t/score/batch_k.jsonl  rewards of the responses in gen/batch_k
  RUN/iter_t/responses.jsonl      every prompt's current two responses after this iteration's regeneration
  RUN/iter_t/pairs.jsonl          the pairs trained on (chosen/rejected rewards, weight) and the dropped ties
  RUN/iter_t/times.json           seconds spent so far in each phase of iteration t
  RUN/iter_t/ref_logps.json       reference log-probs of the pairs (computed once)
  RUN/iter_t/train_state.pt       training state every train.save_steps steps (deleted once checkpoint/ exists)
  RUN/iter_t/checkpoint/*         pi_{t+1}: safetensors + tokenizer (loadable by transformers), train_metrics.json, train_log.jsonl
                                  (and README.md, the model card `optune export` writes beside the final checkpoint)
  RUN/iter_t/heldout/batch_k.jsonl    held-out responses of pi_{t+1} and their rewards, per batch
  RUN/iter_t/heldout.jsonl            all of them
  RUN/iter_000/heldout_start/batch_k.jsonl, RUN/iter_000/heldout_start.jsonl   the same for pi_0
  RUN/iter_t/metrics.json         written last: its presence means iteration t is finished
  RUN/bench/iter_t.json           `optune bench` results of pi_{t+1} (written on demand)
  RUN/export/preferences.parquet, RUN/export/preferences.jsonl   `optune export` without --out (on demand)
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


def atomic_write(path: Path, write: Callable[[IO], None], text: bool = False, mode: int | None = None) -> None:
    """`write(f)` into a temp file in the same directory (binary, or UTF-8 text), fsync, then rename over the target.

    `mode` (e.g. 0o600) is set on the temp file before anything is written, so the content is never readable
    with looser permissions.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") if text else os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write(path, lambda f: f.write(text), text=True, mode=mode)


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=1) + "\n")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def atomic_save_dir(target: Path, save: Callable[[Path], None]) -> None:
    """Fill a temp directory with `save(tmp)` and rename it to target; a partial directory never appears."""
    target = Path(target)
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
    for path in Path(root).rglob(".*"):
        if path.name == MARKER or not path.exists():
            continue
        shutil.rmtree(path) if path.is_dir() else path.unlink()


class RunStore:
    """Named paths and atomic writes of one run directory; `writer=False` makes every write a no-op."""

    def __init__(self, root: Path, writer: bool = True):
        self.root = Path(root)
        self.writer = writer

    @classmethod
    def open_existing(cls, root: str, writer: bool = True) -> RunStore:
        path = Path(root)
        if not path.is_dir():
            raise UserError(f"cannot resume {root}: no such directory")
        store = cls(path, writer)
        if not store.marker.is_file() or not store.config.is_file():
            raise UserError(f"cannot resume {root}: not an optune run directory (no {MARKER} or config.yaml)")
        if writer:
            clean_temporaries(path)
        return store

    @classmethod
    def create(cls, root: Path, config_yaml: str, versions: dict) -> RunStore:
        root = Path(root)
        if root.exists() and any(root.iterdir()):
            raise UserError(f"output directory {root} already exists and is not empty; use --resume {root}")
        root.mkdir(parents=True, exist_ok=True)
        store = cls(root)
        atomic_write_text(store.config, config_yaml)
        write_json(store.versions, versions)
        atomic_write_text(store.marker, "optune run directory\n")
        return store

    # -- named paths (the layout above) --------------------------------------------------------------
    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def versions(self) -> Path:
        return self.root / "versions.json"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts.jsonl"

    @property
    def metrics_log(self) -> Path:
        return self.root / "metrics.jsonl"

    def iter_dir(self, t: int) -> Path:
        return self.root / f"iter_{t:03d}"

    def selection(self, t: int) -> Path:
        return self.iter_dir(t) / "selection.json"

    def gen_dir(self, t: int) -> Path:
        return self.iter_dir(t) / "gen"

    def score_dir(self, t: int) -> Path:
        return self.iter_dir(t) / "score"

    def responses(self, t: int) -> Path:
        return self.iter_dir(t) / "responses.jsonl"

    def pairs(self, t: int) -> Path:
        return self.iter_dir(t) / "pairs.jsonl"

    def times(self, t: int) -> Path:
        return self.iter_dir(t) / "times.json"

    def ref_logps(self, t: int) -> Path:
        return self.iter_dir(t) / "ref_logps.json"

    def train_state(self, t: int) -> Path:
        return self.iter_dir(t) / "train_state.pt"

    def checkpoint(self, t: int) -> Path:
        return self.iter_dir(t) / "checkpoint"

    def train_metrics(self, t: int) -> Path:
        return self.checkpoint(t) / "train_metrics.json"

    def heldout_dir(self, t: int, start: bool = False) -> Path:
        return self.iter_dir(t) / ("heldout_start" if start else "heldout")

    def heldout(self, t: int, start: bool = False) -> Path:
        return self.iter_dir(t) / ("heldout_start.jsonl" if start else "heldout.jsonl")

    def metrics(self, t: int) -> Path:
        return self.iter_dir(t) / "metrics.json"

    def bench(self, t: int) -> Path:
        return self.root / "bench" / f"{self.iter_dir(t).name}.json"

    @property
    def export_dir(self) -> Path:
        return self.root / "export"

    def model_card(self, t: int) -> Path:
        return self.checkpoint(t) / "README.md"

    @staticmethod
    def batch_path(folder: Path, k: int) -> Path:
        return folder / f"batch_{k:05d}.jsonl"

    # -- state ---------------------------------------------------------------------------------------
    def finished(self, t: int) -> bool:
        return self.metrics(t).is_file()

    def iterations(self) -> list[int]:
        """Every iteration with a directory, finished or not."""
        return sorted(int(p.name[5:]) for p in self.root.glob("iter_[0-9][0-9][0-9]") if p.is_dir())

    def finished_iterations(self) -> list[int]:
        return [t for t in self.iterations() if self.finished(t)]

    def checkpoints(self) -> list[int]:
        """Iterations whose trained checkpoint pi_{t+1} is complete."""
        return [t for t in self.iterations() if (self.checkpoint(t) / "config.json").is_file()]

    # -- writes (no-ops unless this process is the writer) -------------------------------------------
    def write_json(self, path: Path, obj) -> None:
        if self.writer:
            write_json(path, obj)

    def write_jsonl(self, path: Path, rows: Iterable[dict]) -> None:
        if self.writer:
            write_jsonl(path, rows)

    def write_file(self, path: Path, write: Callable[[IO], None]) -> None:
        """A binary file through `write(f)` (e.g. torch.save), atomically."""
        if self.writer:
            atomic_write(path, write)

    def save_dir(self, target: Path, save: Callable[[Path], None]) -> None:
        if self.writer:
            atomic_save_dir(target, save)

    def batched(self, folder: Path, items: list, batch_size: int, work: Callable[[list], list[dict]],
                progress=None) -> list[dict]:
        """Run `work` over items in fixed batches, one atomic file per finished batch; skip finished ones.

        The batch boundaries depend only on (items, batch_size), so a resumed run finds the same batches.
        """
        rows: list[dict] = []
        for k, start in enumerate(range(0, len(items), batch_size)):
            path = self.batch_path(folder, k)
            if path.is_file():
                out = read_jsonl(path)
            else:
                out = work(items[start:start + batch_size])
                self.write_jsonl(path, out)
            rows.extend(out)
            if progress is not None:
                progress.update(len(items[start:start + batch_size]))
        return rows

    def write_metrics(self, t: int, metrics: dict) -> None:
        """iter_t/metrics.json (the iteration's end), then metrics.jsonl rebuilt from every finished iteration."""
        self.write_json(self.metrics(t), metrics)
        self.rebuild_metrics_log()

    def rebuild_metrics_log(self) -> None:
        """metrics.jsonl is derived: rebuilt from iter_*/metrics.json (a kill between the two loses nothing)."""
        finished = self.finished_iterations()
        if finished:
            self.write_jsonl(self.metrics_log, [read_json(self.metrics(t)) for t in finished])
