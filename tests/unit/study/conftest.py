"""Small systems' output files and a ready study, shared by the study tests."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from optune.study.create import create_study
from tests.conftest import interruptible

SCRIPT = "<script>window.__pwned = 1</script>"


def write_outputs(tmp_path, n_prompts: int = 6):
    """Two systems on the same prompts: one AlpacaEval JSON, one JSONL, names kept distinctive."""
    a = tmp_path / "alpha.json"
    a.write_text(json.dumps([
        {"instruction": f"Question {i}: what is {i} + {i}?", "output": f"Alpha answer {i}\nsecond line",
         "generator": "ALPHA-7B"}
        for i in range(n_prompts)
    ]))
    b = tmp_path / "beta.jsonl"
    with b.open("w") as fh:
        for i in range(n_prompts):
            text = f"Beta answer {i} {SCRIPT}" if i % 2 == 0 else f"Beta answer {i}"
            fh.write(json.dumps({"prompt": f"Question {i}: what is {i} + {i}?", "response": text}) + "\n")
    return a, b


@pytest.fixture
def study(tmp_path):
    """(db path, {rater: token}) for a 1-comparison study: 6 prompts, 3 raters, 2 ratings per pair."""
    a, b = write_outputs(tmp_path)
    db = tmp_path / "study.db"
    created = create_study(db, [str(a), f"BETA-13B={b}"], None, n_prompts=6, raters=["r1", "r2", "r3"],
                           ratings_per_item=2, seed=0)
    return db, dict(created.tokens)


SRC = str(Path(__file__).resolve().parents[3] / "src")


class ServeProcess:
    """The real `optune study serve DB --port 0 [ARGS]` as a child process; its log goes to `log_path`."""

    def __init__(self, db, log_path, *args: str):
        env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
        self.log_path = Path(log_path)
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "optune.cli", "study", "serve", str(db), "--port", "0", *args],
                stdout=subprocess.PIPE, stderr=log, text=True, env=env, preexec_fn=interruptible)
        line = self.proc.stdout.readline()  # "serving study DB at http://127.0.0.1:PORT/ with N threads (...)"
        if " at http://127.0.0.1:" not in line:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line!r} {self.log()!r}")
        self.port = int(line.split(" at http://127.0.0.1:")[1].split("/")[0])

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, text) for one request, the path sent exactly as given."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def post_form(self, path: str, body: str | bytes):
        data = body.encode() if isinstance(body, str) else body
        return self.request("POST", path, data, {"Content-Type": "application/x-www-form-urlencoded"})

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        finally:
            self.proc.stdout.close()


def first_assignment(html: str) -> int:
    return int(re.search(r'name="assignment" value="(\d+)"', html).group(1))
