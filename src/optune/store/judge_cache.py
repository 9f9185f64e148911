"""On-disk cache of judge replies, so a rerun (after a crash, a 429 storm, a new report) never asks twice.

Judge calls cost money and minutes; the cache is an append-only JSONL file, one line per finished
request, flushed as soon as the reply arrives. A crash can at worst leave a torn last line, which is
skipped on reading. The key covers everything that changes the answer: judge identity (model,
prompt version, decoding settings), question and both answers in their shown order. The raw reply
is stored, not the parsed scores, so an improved parser applies to old replies too.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path


def cache_key(judge_id: str, question: str, answer_1: str, answer_2: str) -> str:
    payload = json.dumps([judge_id, question, answer_1, answer_2], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgmentCache:
    """Thread-safe append-only store of key -> reply text; with path None it lives in memory only."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._replies: dict[str, str] = {}
        if self.path is not None and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").split("\n"):
                try:
                    row = json.loads(line)
                    self._replies[row["key"]] = row["reply"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # torn or foreign line: that request is simply asked again

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
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
