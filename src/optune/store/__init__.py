"""Atomic files, and the run directory: a killed run leaves each file complete or absent.

Every file a user keeps (run directories, reward models, reports, exports) is written by `atomic_write`
(or `atomic_save_dir`, `atomic_save_files`; all in optune.store.atomic, re-exported here): a temp file in the
same directory, fsync, rename. A kill leaves at most a hidden temp file, which `clean_temporaries` removes
on resume. A write the file system refuses (disk full, read-only) raises `WriteError`, one line, and
leaves no half-written file. `RunStore` names every file of a run directory;
only its writer process writes (the main one in a multi-process run, optune.distributed), and it holds the
directory's lock (optune.store.lock) for the run's life.

A run directory either does not exist or is resumable: `create_dir` fills it under a hidden temp name
beside its final path and renames it into place. A file damaged afterwards (a disk error, a hand edit) is
diagnosed on resume: one of an unfinished step (a batch file, selection.json, times.json, ref_logps.json,
train_state.pt, an unfinished iteration's checkpoint) is removed and recomputed with one line on stderr; one of a
finished iteration stops the resume with one line (`Damaged`, exit 2) naming it and what to remove.

Layout (RUN = the run directory, t = iteration, zero-padded to 3 digits):
  RUN/.optune-run                 marker: this directory is an optune run
  RUN/.optune-lock                held (flock) by the process running it; holds its PID; gone after a clean exit
  RUN/config.yaml                 resolved config (a resume with deployment-only overrides writes their new values)
  RUN/config_digest.json          the keys that decide what the run computes, their values, sha256 (runner.resume)
  RUN/versions.json               package versions
  RUN/prompts.jsonl               the training prompts' texts ({"id", "prompt", "history"}), for `optune export`
  RUN/metrics.jsonl               one JSON object per finished iteration (rebuilt from iter_*/metrics.json)
  RUN/summary.json                written when the run ends: held-out curve, best and final checkpoint (relative)
  RUN/iter_t/selection.json       ids of the prompts regenerated at t
  RUN/iter_t/gen/batch_k.jsonl    generated responses, one file per finished generation batch
  RUN/iter_t/score/batch_k.jsonl  rewards of the responses in gen/batch_k
  RUN/iter_t/responses.jsonl      every prompt's current two responses after this iteration's regeneration
  RUN/iter_t/pairs.jsonl          the pairs trained on (chosen/rejected rewards, weight) and the dropped ties
  RUN/iter_t/times.json           seconds spent so far in each phase of iteration t
  RUN/iter_t/ref_logps.json       reference log-probs of the pairs (computed once; null until training fills them)
  RUN/iter_t/train_state.pt       training state every train.save_steps steps (deleted once checkpoint/ exists)
  RUN/iter_t/checkpoint/*         pi_{t+1}: safetensors + tokenizer (loadable by transformers), train_metrics.json,
                                  train_log.jsonl (and README.md in the final checkpoint: the model card, written as the
                                  run ends, again by `optune export` with the time split)
  RUN/iter_t/heldout/batch_k.jsonl    held-out responses of pi_{t+1} (text, token ids) and rewards, per batch
  RUN/iter_t/heldout.jsonl            all of them
  RUN/iter_000/heldout_start/batch_k.jsonl, RUN/iter_000/heldout_start.jsonl   the same for pi_0
  RUN/iter_t/metrics.json         written last: its presence means iteration t is finished
  RUN/bench/iter_t.json           `optune bench` results of pi_{t+1} (written on demand)
  RUN/export/preferences.parquet, RUN/export/preferences.jsonl   `optune export` without --out (on demand)
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from optune.clock import Progress
from optune.errors import Damaged, UserError
from optune.store.atomic import (
    KEEP,
    MARKER,
    WriteError,
    atomic_save_dir,
    atomic_save_files,
    atomic_write,
    atomic_write_text,
    check_new_dir,
    clean_temporaries,
    create_dir,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from optune.store.damage import _read_object, _read_prompt_rows, batch_rows_problem, damage, warn
from optune.store.lock import DirLock

__all__ = ["KEEP", "damage", "MARKER", "RunStore", "WriteError", "atomic_save_dir", "atomic_save_files", "atomic_write",
           "atomic_write_text", "check_new_dir", "clean_temporaries", "create_dir", "read_json", "read_jsonl",
           "warn", "write_json", "write_jsonl"]

class RunStore:
    """Named paths and atomic writes of one run directory; `writer=False` makes every write a no-op.

    A writer store holds the directory's lock until `close()` (or until the process ends).
    """

    def __init__(self, root: Path, writer: bool = True, lock: DirLock | None = None):
        self.root = Path(root)
        self.writer = writer
        self.lock = lock

    @classmethod
    def open_existing(cls, root: str, writer: bool = True) -> RunStore:
        """An existing run to resume (writer: locked, leftovers of a kill removed) or to read."""
        path = Path(root)
        if not path.is_dir():
            raise UserError(f"cannot resume {root}: " + ("a file, not a run directory" if path.exists() else
                                                         "no such directory"))
        store = cls(path, writer)
        if not store.config.is_file() or not (store.marker.is_file() or store._half_made()):
            raise UserError(f"cannot resume {root}: not an optune run directory (no {MARKER} or config.yaml)")
        if writer:
            store.lock = DirLock.acquire(path, "run directory")
            if not store.marker.is_file():  # made by an older optune, killed before its marker: finish it
                atomic_write_text(store.marker, "optune run directory\n")
            clean_temporaries(path)
            store.check_own_files()
        return store

    def check_own_files(self) -> None:
        """The run-wide files a resume reads back, checked first. config_digest.json is what config.yaml is
        checked against: a damaged one is refused (exit 2), since rewriting it from config.yaml would accept a
        config.yaml that no longer gives what the run computed. versions.json and prompts.jsonl are removed
        with one line: prompts.jsonl is written again from data.train as the run prepares (the same texts: data.train
        is a key the resume keeps); versions.json cannot be, so the model card then lists no versions."""
        try:
            if self.config_digest.is_file() and not isinstance(read_json(self.config_digest).get("keys"), dict):
                raise ValueError("no 'keys' mapping in it")
        except (OSError, ValueError, AttributeError) as err:
            problem = damage(err) if not isinstance(err, AttributeError) else "not a JSON object"
            raise Damaged(f"{self.rel(self.config_digest)} is damaged ({problem}); it records what the run "
                          "computes, to check config.yaml against: restore it, or remove it to resume with "
                          "config.yaml as it is, unchecked") from None
        for path, read, then in (
                (self.versions, _read_object, "the model card will list no package versions"),
                (self.prompts, _read_prompt_rows, "writing it again from data.train")):
            try:
                if path.is_file():
                    read(path)
            except (OSError, ValueError, KeyError, TypeError) as err:
                self.discard(path, damage(err), then)

    def _half_made(self) -> bool:
        """What older versions left when killed while creating a run: an optune config.yaml (and perhaps
        versions.json), nothing else, no marker."""
        from optune.config.run import load_config

        names = {p.name for p in self.root.iterdir() if not p.name.startswith(".")}
        if not names <= {"config.yaml", "versions.json"}:
            return False
        try:
            load_config(str(self.config))
        except UserError:
            return False
        return True

    @classmethod
    def create(cls, root: Path, config_yaml: str, versions: dict,
               fill: Callable[[RunStore], None] | None = None) -> RunStore:
        """A new run directory, complete or absent (`create_dir`); `fill(store)` adds to it before it appears."""

        def build(tmp: Path) -> None:
            store = cls(tmp)
            atomic_write_text(store.config, config_yaml)
            write_json(store.versions, versions)
            if fill is not None:
                fill(store)
            atomic_write_text(store.marker, "optune run directory\n")

        lock = create_dir(Path(root), build)
        return cls(lock.root, lock=lock)

    def close(self) -> None:
        """Release the directory's lock (a no-op for readers and once closed)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- named paths (the layout above) --------------------------------------------------------------
    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def config_digest(self) -> Path:
        """What the run computes, recorded at creation: a resume whose config.yaml differs is refused."""
        return self.root / "config_digest.json"

    @property
    def versions(self) -> Path:
        return self.root / "versions.json"

    @property
    def prompts(self) -> Path:
        return self.root / "prompts.jsonl"

    @property
    def metrics_log(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        """Written when a run ends: iterations run, the held-out curve, the best and the final checkpoint."""
        return self.root / "summary.json"

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

    def policy_path(self, t: int, initial: str, trained: bool = False) -> str:
        """The checkpoint that holds pi_t at iteration t, or pi_{t+1} once `trained`; `initial` is pi_0's.

        Backends that load weights themselves (vllm) sample from it; the loop writes pi_{t+1} before using it.
        """
        if trained:
            return str(self.checkpoint(t))
        return str(self.checkpoint(t - 1)) if t > 0 else initial

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

    def complete(self, iterations: int) -> bool:
        """Whether iterations 0 .. iterations-1 are all finished (a resume has nothing left to do)."""
        return all(self.finished(t) for t in range(iterations))

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

    def write_file(self, path: Path, write: Callable[[IO], object]) -> None:
        """A binary file through `write(f)` (e.g. torch.save), atomically."""
        if self.writer:
            atomic_write(path, write)

    def save_dir(self, target: Path, save: Callable[[Path], object]) -> None:
        if self.writer:
            atomic_save_dir(target, save)

    def batched(self, folder: Path, items: list, batch_size: int, work: Callable[[list], list[dict]],
                progress: Progress | None = None) -> list[dict]:
        """Run `work` over items in fixed batches, one atomic file per finished batch; skip finished ones.

        The batch boundaries depend only on (items, batch_size), so a resumed run finds the same batches.
        """
        rows: list[dict] = []
        for k, start in enumerate(range(0, len(items), batch_size)):
            path = self.batch_path(folder, k)
            out = self.read_batch(path, len(items[start:start + batch_size]), items[start:start + batch_size])
            if out is None:
                out = work(items[start:start + batch_size])
                self.write_jsonl(path, out)
            rows.extend(out)
            if progress is not None:
                progress.update(len(items[start:start + batch_size]))
        return rows

    def read_batch(self, path: Path, n: int, items: list | None = None) -> list[dict] | None:
        """A finished batch file's rows (one per item, n of them), or None to (re)compute it: absent, or
        damaged (unreadable, cut short, rows that are not what its folder holds or not for its `items`), in which
        case it is removed with one log line. A batch is a function of its items and the run's seed, so redoing
        it gives the same rows."""
        try:
            rows = read_jsonl(path)
            problem = None if len(rows) == n else f"{len(rows)} rows where {n} were expected"
            problem = problem or batch_rows_problem(path.parent.name, rows, items)
        except FileNotFoundError:  # not done yet (or removed by the writer process just now)
            return None
        except (OSError, ValueError) as err:  # ValueError: not JSON, or not UTF-8
            problem = damage(err)
        if problem is None:
            return rows
        self.discard(path, problem, "redoing that batch")
        return None

    def check_rewritten(self, path: Path) -> None:
        """A JSONL file of an unfinished step that is about to be written again in full: if damaged, say so (the
        write replaces it; nothing read it)."""
        try:
            read_jsonl(path)
        except FileNotFoundError:
            pass
        except (OSError, ValueError) as err:
            self.discard(path, damage(err), "writing it again")

    def discard(self, path: Path, problem: str, then: str) -> None:
        """Remove a damaged file of an unfinished step that will be recomputed (the writer says so on stderr, once:
        a warning, apart from the run's progress on stdout)."""
        if self.writer:
            warn(f"{self.rel(path)} is damaged ({problem}): removed it, {then}")
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def rel(self, path: Path) -> str:
        """path as the user knows it: under the run directory's own name."""
        try:
            return str(self.root / Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    def read_finished(self, t: int, path: Path, read: Callable[[Path], object] = read_json):
        """`read(path)` of a file of finished iteration t; a damaged one stops the run with one line (that
        iteration's results are inputs of every later one, so it cannot be redone in place)."""
        try:
            return read(path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise Damaged(self.finished_damage(t, path, damage(err))) from None

    def finished_damage(self, t: int, path: Path, problem: str) -> str:
        return (f"{self.rel(path)} is damaged ({problem}); iteration {t} is finished, so it cannot be redone in "
                f"place: remove {self.iter_dir(t)} and later iterations to redo them, or start a new run")

    def write_metrics(self, t: int, metrics: dict) -> None:
        """iter_t/metrics.json (the iteration's end), then metrics.jsonl rebuilt from every finished iteration."""
        self.write_json(self.metrics(t), metrics)
        self.rebuild_metrics_log()

    def rebuild_metrics_log(self) -> None:
        """metrics.jsonl is derived: rebuilt from iter_*/metrics.json (a kill between the two loses nothing)."""
        finished = self.finished_iterations()
        if finished:
            self.write_jsonl(self.metrics_log, [self.read_finished(t, self.metrics(t)) for t in finished])
