"""Crash harness: record every file event of a command, SIGKILL fresh runs right after chosen events, resume,
and compare the finished directory with an uninterrupted one.

- `Watcher`: inotify (through ctypes, no compiled dependency) over a directory tree; an event is
  ("create", path) or ("replace", path) (a rename into place), path relative to the watched folder with the
  run directory's name and temp-name suffixes normalised, so the same write point has the same key in
  every run. A key plus its occurrence number names one write point.
- `run_to_end` / `kill_after`: a command run in a fork server (tests/e2e/forkserver.py), to its end or
  SIGKILLed right after a chosen event.
- `compare_trees`: the checks of a finished directory against the reference (checkpoints by sha256,
  responses and pairs byte for byte, metrics without timing fields, JSONL line counts, no temp files).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import random
import re
import select
import signal
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.forkserver import Zygote

IN_MOVED_TO, IN_CREATE, IN_ISDIR, IN_IGNORED, IN_Q_OVERFLOW = 0x80, 0x100, 0x40000000, 0x8000, 0x4000
WATCH_MASK = IN_CREATE | IN_MOVED_TO | 0x40 | 0x200 | 0x400 | 0x800  # + moved_from, delete(_self), move_self
_EVENT = struct.Struct("iIII")


class Watcher:
    """Recursive inotify watch of `root`; `read(timeout)` returns new (kind, normalised path) events in order."""

    def __init__(self, root: Path, run_name: str):
        self.root, self.run_name = Path(root), run_name
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.paths: dict[int, Path] = {}
        self.pending: list[tuple[str, str]] = []
        self._add_tree(self.root, report=False)

    def close(self) -> None:
        os.close(self.fd)

    def _add(self, path: Path) -> None:
        wd = self.libc.inotify_add_watch(self.fd, os.fsencode(path), WATCH_MASK)
        if wd >= 0:  # the directory may be gone already (a temp directory renamed or removed)
            self.paths[wd] = path

    def _add_tree(self, path: Path, report: bool) -> None:
        """Watch path and everything under it; entries that appeared before the watch become create events."""
        self._add(path)
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if report:
                self.pending.append(("create", self.key(Path(entry.path))))
            if entry.is_dir(follow_symlinks=False):
                self._add_tree(Path(entry.path), report)

    def key(self, path: Path) -> str:
        return normalise(path.relative_to(self.root).as_posix(), self.run_name)

    def read(self, timeout: float) -> list[tuple[str, str]]:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if ready:
            self._drain()
        out, self.pending = self.pending, []
        return out

    def _drain(self) -> None:
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return
        offset = 0
        while offset < len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0").decode()
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                raise RuntimeError("inotify queue overflowed: events were lost")
            if mask & IN_IGNORED:
                self.paths.pop(wd, None)
                continue
            folder = self.paths.get(wd)
            if folder is None or not mask & (IN_CREATE | IN_MOVED_TO):
                continue
            path = folder / name
            created = bool(mask & IN_CREATE)
            self.pending.append(("create" if created else "replace", self.key(path)))
            if mask & IN_ISDIR:
                # a new directory's early entries may predate its watch: report them; a renamed one keeps its
                # watches (inotify watches inodes), re-pointed here to its new path
                self._add_tree(path, report=created)


_STAGING = re.compile(r"\.new-\d+-[a-z0-9_]{8}$")
_TEMP = re.compile(r"^(\..*?[.-])[a-z0-9_]{8}$")
_LIB_TEMP = re.compile(r"^\.?tmp[A-Za-z0-9_]{4,}$")  # tempfile names of libraries (transformers' safetensors)


def normalise(rel: str, run_name: str) -> str:
    """A path with the run's name as RUN and random temp-name parts as TMP, the same in every run."""
    out = []
    for part in rel.split("/"):
        if part == run_name:
            part = "RUN"
        elif part.startswith(f".{run_name}.new-"):
            part = ".RUN.new-TMP"
        else:
            part = _LIB_TEMP.sub(".tmpTMP", _TEMP.sub(r"\1TMP", _STAGING.sub(".new-TMP", part)))
        out.append(part)
    return "/".join(out)


@dataclass
class Event:
    kind: str
    path: str
    occurrence: int
    """1 for the first event with this (kind, path), 2 for the second ..."""

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.path

    def __str__(self) -> str:
        return f"{self.kind} {self.path} #{self.occurrence}"


def numbered(events: list[tuple[str, str]]) -> list[Event]:
    seen: Counter = Counter()
    out = []
    for kind, path in events:
        seen[(kind, path)] += 1
        out.append(Event(kind, path, seen[(kind, path)]))
    return out


def run_to_end(zygote: Zygote, argv: list[str], log: Path, watch: tuple[Path, str] | None = None,
               fault: dict | None = None):
    """Run a command to its end; with watch=(folder, run name), also return the events it caused."""
    watcher = Watcher(*watch) if watch else None
    zygote.spawn(argv, log, fault)
    events: list[tuple[str, str]] = []
    while not zygote.finished(0.05):
        if watcher:
            events += watcher.read(0)
    rc = zygote.wait()
    if watcher:
        events += watcher.read(0.2)
        watcher.close()
    return rc, numbered(events)


def kill_after(zygote: Zygote, argv: list[str], log: Path, folder: Path, run_name: str,
               target: Event | int, reference: list[Event] | None = None) -> tuple[int, str]:
    """Run argv and SIGKILL it right after `target`: an Event of `reference` (the uninterrupted run's
    events), or the n-th event of any kind.

    inotify sees a new directory's first entries only by scanning it, so an event of the reference may show
    up differently (a temp file already renamed); the kill then comes at the first event that follows the
    target in the reference. Returns (exit status, the event the kill followed); a run that ends first
    returns its own status.
    """
    order = {(e.kind, e.path, e.occurrence): i for i, e in enumerate(reference or [])}
    goal = order.get((target.kind, target.path, target.occurrence)) if isinstance(target, Event) else None
    watcher = Watcher(folder, run_name)
    pid = zygote.spawn(argv, log)
    count: Counter = Counter()
    seen = 0
    try:
        while True:
            for kind, path in watcher.read(0.01):
                count[(kind, path)] += 1
                seen += 1
                position = order.get((kind, path, count[(kind, path)]), -1)
                if (seen == target) if goal is None else (position >= goal):
                    os.kill(pid, signal.SIGKILL)
                    return zygote.wait(), f"{kind} {path} #{count[(kind, path)]}"
            if zygote.finished():
                return zygote.wait(), "end"
    finally:
        watcher.close()


def phase(event: Event) -> str:
    """The part of a run an event belongs to, for spreading a sample over all of them."""
    path = event.path
    m = re.match(r"RUN/(iter_\d+)/([^/.]+)", path)
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    m = re.match(r"RUN/(iter_\d+)/\.([^/.]+)", path)  # temp file or directory of an iteration's file
    if m:
        return f"{m.group(1)}/{m.group(2)}"
    if path.startswith("RUN.new") or not path.startswith("RUN/"):
        return "create"
    return path.split("/")[1].lstrip(".").split(".")[0]


def sample_events(events: list[Event], n: int, seed: int) -> list[Event]:
    """n events (all when n >= len), spread round-robin over the phases, seeded."""
    if n >= len(events):
        return list(events)
    rng = random.Random(seed)
    groups: dict[str, list[Event]] = {}
    for e in events:
        groups.setdefault(phase(e), []).append(e)
    for g in groups.values():
        rng.shuffle(g)
    picked: list[Event] = []
    while len(picked) < n:
        for name in sorted(groups):
            if groups[name] and len(picked) < n:
                picked.append(groups[name].pop())
    return picked


@dataclass
class Rules:
    """How files of a finished directory are compared with the reference."""

    skip: tuple[str, ...] = ()
    """Names whose content is all timing (e.g. times.json): present in both, content not compared."""
    json_ignore: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Name -> key prefixes left out when comparing JSON / JSONL content (timing fields)."""
    text_drop: dict[str, str] = field(default_factory=dict)
    """Name -> prefix of lines left out (e.g. output_dir in a saved config)."""


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _json_rows(path: Path, ignore: tuple[str, ...]) -> list:
    text = path.read_text()
    rows = [json.loads(line) for line in text.splitlines()] if path.suffix == ".jsonl" else [json.loads(text)]
    return [{k: v for k, v in r.items() if not k.startswith(ignore)} if isinstance(r, dict) else r for r in rows]


def compare_trees(done: Path, reference: Path, rules: Rules, keep_hidden: tuple[str, ...] = (".optune-run",)) -> None:
    """Assert `done` equals `reference` under `rules`, with no temp files anywhere in it or beside it."""
    hidden = [p for p in done.rglob(".*") if p.name not in keep_hidden]
    assert not hidden, f"temporary files left behind: {hidden[:5]}"
    beside = [p.name for p in done.parent.iterdir() if p.name.startswith(f".{done.name}")]
    assert not beside, f"leftovers beside the directory: {beside}"
    files = sorted(p.relative_to(done).as_posix() for p in done.rglob("*") if p.is_file())
    expected = sorted(p.relative_to(reference).as_posix() for p in reference.rglob("*") if p.is_file())
    assert files == expected, f"files differ: extra {set(files) - set(expected)}, missing {set(expected) - set(files)}"
    for rel in files:
        a, b = done / rel, reference / rel
        name = a.name
        if name in rules.skip:
            continue
        if name in rules.json_ignore:
            assert _json_rows(a, rules.json_ignore[name]) == _json_rows(b, rules.json_ignore[name]), rel
        elif name in rules.text_drop:
            drop = rules.text_drop[name]
            keep = [[line for line in p.read_text().splitlines() if not line.startswith(drop)] for p in (a, b)]
            assert keep[0] == keep[1], rel
        else:
            assert _digest(a) == _digest(b), f"{rel} differs from the uninterrupted run"
        if a.suffix == ".jsonl":
            assert len(a.read_text().splitlines()) == len(b.read_text().splitlines()), f"{rel}: line count"

