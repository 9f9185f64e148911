"""On-disk cache of judge replies, so a rerun (after a crash, a 429 storm, a new report) never asks twice.

Judge calls cost money and minutes; the cache is an append-only JSONL file, one line per finished
request, flushed as soon as the reply arrives. A crash can at worst leave a torn last line: on reading, it
(and any other line a damaged disk left unreadable) is named in one line on stderr and its request asked again;
the next reply starts a line of its own. The key covers everything that changes the answer: judge identity (model,
prompt version, decoding settings), question and both answers in their shown order. The raw reply
is stored, not the parsed scores, so an improved parser applies to old replies too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from pathlib import Path

from optune.errors import UserError


def cache_key(judge_id: str, question: str, answer_1: str, answer_2: str) -> str:
    payload = json.dumps([judge_id, question, answer_1, answer_2], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgmentCache:
    """Thread-safe append-only store of key -> reply text; with path None it lives in memory only."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._replies: dict[str, str] = {}
        self._newline = False  # the file ends in a torn line: the next reply starts a line of its own
        if self.path is not None and self.path.is_file():
            self._load(self.path)

    def _load(self, path: Path) -> None:
        """The replies of the file; lines that do not read (a kill's torn last line, a damaged disk) are named in
        one line on stderr, and their requests are asked again."""
        try:
            data = path.read_bytes()
        except OSError as err:
            raise UserError(f"judge cache {path} cannot be read ({err.strerror or type(err).__name__}); "
                            "fix its permissions or remove it") from None
        bad = []
        for number, line in enumerate(data.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
                self._replies[row["key"]] = row["reply"]
            except (ValueError, KeyError, TypeError, RecursionError):  # ValueError: not JSON or not UTF-8
                bad.append(number)
        self._newline = bool(data) and not data.endswith(b"\n")
        if bad:
            what = f"line {bad[0]} does not read" if len(bad) == 1 else \
                f"{len(bad)} lines do not read, the first line {bad[0]}"
            print(f"judge cache {path} is damaged ({what}): kept its {len(self._replies)} readable replies, asking "
                  "the judge again for the rest", file=sys.stderr, flush=True)

    def __len__(self) -> int:
        return len(self._replies)

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._replies.get(key)

    def put(self, key: str, reply: str, judge_id: str) -> None:
        line = json.dumps({"key": key, "judge": judge_id, "reply": reply}, ensure_ascii=False)
        with self._lock:
            self._replies[key] = reply
            if self.path is None:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(("\n" if self._newline else "") + line + "\n")
                self._newline = False
                fh.flush()
                os.fsync(fh.fileno())
