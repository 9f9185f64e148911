"""Raters in parallel against `optune study serve` on loopback: requests, errors, latency.

Each configuration gets a fresh study (2 systems, 4 ratings per pair, `--pairs` pairs per rater) and a
fresh server. Every simulated rater works like the page in a browser, with no pause between pairs (the
worst case): guidelines, the two static files, then for each pair the item page and the rating POST
(303); the first pair is posted twice (a double click: it must count once, first answer kept). All
raters start at the same moment, right after the server is up. The clients are threads of this
process, one keep-alive connection each, on the same machine as the server, so client time is in the
latencies too. Afterwards the study file is checked: ratings stored = pairs assigned, no duplicates,
first answers kept, `PRAGMA integrity_check` ok.

Usage (from the repo root, with the `study` extra installed):
    python benchmarks/study_load.py                                # waitress, 8 threads, 25 and 50 raters
    python benchmarks/study_load.py --server werkzeug              # the Werkzeug development server, for comparison
    python benchmarks/study_load.py --threads 4 8 16 --raters 50   # thread counts side by side
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
sys.path.insert(0, SRC)

from optune.study.create import create_study  # noqa: E402 (needs the sys.path entry above)

WERKZEUG = (
    "import sys\n"
    "from werkzeug.serving import make_server\n"
    "from optune.study.app import create_app\n"
    "server = make_server('127.0.0.1', 0, create_app(sys.argv[1]), threaded=True)\n"
    "print(f'serving study at http://127.0.0.1:{server.server_port}/', flush=True)\n"
    "server.serve_forever()\n"
)
CHOICES = ("A", "B", "tie")
ASSIGNMENT = re.compile(r'name="assignment" value="(\d+)"')


def make_study(folder: Path, raters: int, pairs: int) -> tuple[Path, list[str]]:
    n_prompts = raters * pairs // 4
    text = "A reasonably long answer that a rater reads before choosing. " * 10
    for name in ("one", "two"):
        with (folder / f"{name}.jsonl").open("w") as fh:
            for i in range(n_prompts):
                fh.write(json.dumps({"prompt": f"Question {i}?", "response": f"{name} {i}: {text}"}) + "\n")
    db = folder / "study.db"
    created = create_study(db, [str(folder / "one.jsonl"), str(folder / "two.jsonl")], None, n_prompts=n_prompts,
                           raters=[f"r{i:03d}" for i in range(raters)], ratings_per_item=4, seed=0)
    return db, [token for _, token in created.tokens]


def start_server(kind: str, db: Path, threads: int, log) -> tuple[subprocess.Popen, int]:
    if kind == "waitress":
        cmd = [sys.executable, "-m", "optune.cli", "study", "serve", str(db), "--port", "0", "--threads", str(threads)]
    else:
        cmd = [sys.executable, "-c", WERKZEUG, str(db)]
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
    if not match:
        proc.kill()
        sys.exit(f"server did not start: {line!r}")
    return proc, int(match.group(1))


class Rater:
    """One simulated rater on one keep-alive connection; `samples` holds (kind, status, seconds)."""

    def __init__(self, port: int, token: str, max_pairs: int):
        self.port, self.token, self.max_pairs = port, token, max_pairs
        self.samples: list[tuple[str, int, float]] = []
        self.first: tuple[int, str] | None = None
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, kind: str, method: str, path: str, body: str | None = None) -> tuple[int, str]:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers=headers)
            resp = self.conn.getresponse()
            status, text = resp.status, resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            status, text = 0, ""
        self.samples.append((kind, status, time.perf_counter() - started))
        return status, text

    def run(self, go: threading.Event) -> None:
        go.wait()
        base = f"/r/{self.token}"
        self.call("page", "GET", base)
        self.call("static", "GET", "/static/study.css")
        self.call("static", "GET", "/static/keys.js")
        for n in range(self.max_pairs + 2):  # bounded: a rater never loops forever
            status, html = self.call("page", "GET", f"{base}/item")
            match = ASSIGNMENT.search(html)
            if status != 200 or not match:
                break
            assignment, choice = int(match.group(1)), CHOICES[n % 3]
            self.call("rate", "POST", f"{base}/rate", f"assignment={assignment}&choice={choice}")
            if n == 0:  # a double submit with another answer: the first one must stand
                self.first = (assignment, choice)
                self.call("rate", "POST", f"{base}/rate", f"assignment={assignment}&choice={CHOICES[1]}")
        self.conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def check_file(db: Path, raters: list[Rater], expected: int) -> str:
    conn = sqlite3.connect(db)
    try:
        stored, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT assignment) FROM ratings").fetchone()
        kept = all(conn.execute("SELECT choice FROM ratings WHERE assignment = ?", (r.first[0],)).fetchone()[0]
                   == r.first[1] for r in raters if r.first)
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()
    return f"{stored}/{expected}{'' if distinct == stored else ' DUP'}{'' if kept else ' LOST-FIRST'} {ok}"


def one_config(kind: str, threads: int, n_raters: int, pairs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="study-load-") as tmp:
        db, tokens = make_study(Path(tmp), n_raters, pairs)
        with open(Path(tmp) / "server.log", "w") as log:
            proc, port = start_server(kind, db, threads, log)
            try:
                go = threading.Event()
                raters = [Rater(port, token, pairs) for token in tokens]
                workers = [threading.Thread(target=r.run, args=(go,)) for r in raters]
                for w in workers:
                    w.start()
                started = time.perf_counter()
                go.set()
                for w in workers:
                    w.join(timeout=600)
                wall = time.perf_counter() - started
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        samples = [s for r in raters for s in r.samples]
        good = {"page": 200, "static": 200, "rate": 303}
        errors = sum(1 for kind_, status, _ in samples if status != good[kind_])
        rates = [t for k, _, t in samples if k == "rate"]
        every = [t for _, _, t in samples]
        return {
            "server": kind if kind == "werkzeug" else f"waitress x{threads}", "raters": n_raters,
            "requests": len(samples), "errors": errors, "5xx": sum(1 for _, s, _ in samples if s >= 500),
            "req/s": len(samples) / wall, "p50": statistics.median(every) * 1000, "p95": percentile(every, 0.95) * 1000,
            "max": max(every) * 1000, "rate p95": percentile(rates, 0.95) * 1000, "rate max": max(rates) * 1000,
            "file": check_file(db, raters, n_raters * pairs), "wall": wall,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=["waitress", "werkzeug"], nargs="+", default=["waitress"])
    parser.add_argument("--threads", type=int, nargs="+", default=[8], help="waitress worker threads (default 8)")
    parser.add_argument("--raters", type=int, nargs="+", default=[25, 50], help="parallel raters (default 25 50)")
    parser.add_argument("--pairs", type=int, default=24, help="pairs per rater (default 24; raters*pairs % 4 == 0)")
    args = parser.parse_args()
    if any(r * args.pairs % 4 for r in args.raters) or args.pairs < 1:
        parser.error("raters * pairs must be a multiple of 4 (4 ratings per pair)")
    print("| server | raters | requests | errors | 5xx | req/s | p50 ms | p95 ms | max ms | rate p95 ms | "
          "rate max ms | ratings stored, integrity | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for kind in args.server:
        for threads in (args.threads if kind == "waitress" else [0]):
            for n in args.raters:
                r = one_config(kind, threads, n, args.pairs)
                print(f"| {r['server']} | {r['raters']} | {r['requests']} | {r['errors']} | {r['5xx']} | "
                      f"{r['req/s']:.0f} | {r['p50']:.0f} | {r['p95']:.0f} | {r['max']:.0f} | {r['rate p95']:.0f} | "
                      f"{r['rate max']:.0f} | {r['file']} | {r['wall']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
