"""`optune study create | serve | results`: the human study from the command line.

Defaults follow the paper's Appendix D: 50 prompts, 8 raters, each pair rated by 4 people.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optune.errors import UserError
from optune.store import atomic_write_text
from optune.study import results, storage
from optune.study.create import create_study

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="make a study file from two or more systems' responses")
    c.add_argument("out", help="study file to write (SQLite), e.g. study.db")
    c.add_argument("--system", action="append", required=True, metavar="[NAME=]PATH",
                   help="a system's responses: AlpacaEval model_outputs JSON or JSONL {prompt, response}; "
                        "repeat for each system (name defaults to the file's generator, else its stem)")
    c.add_argument("--compare", action="append", metavar="FIRST:SECOND",
                   help="a comparison; results are FIRST's win/loss/tie; repeatable (default: the two systems)")
    c.add_argument("--n-prompts", type=int, default=50, help="prompts drawn at random (default 50)")
    who = c.add_mutually_exclusive_group()
    who.add_argument("--raters", type=int, default=8, help="number of raters (default 8)")
    who.add_argument("--rater-names", help="comma-separated rater names instead of rater01..")
    c.add_argument("--ratings-per-item", type=int, default=4, help="raters per pair (default 4)")
    c.add_argument("--seed", type=int, default=0, help="seed for prompts, assignment and A/B order")
    c.add_argument("--base-url", default="http://127.0.0.1:8000", help="where `serve` will be reachable")
    c.add_argument("--links-out", help="also write rater<TAB>link lines to this file (mode 600)")
    c.add_argument("--force", action="store_true", help="overwrite an existing study file (loses its ratings)")

    s = sub.add_parser("serve", help="run the rating web page")
    s.add_argument("db", help="study file made by `optune study create`")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 picks a free one)")
    s.add_argument("--threads", type=int, default=8, help="worker threads (default 8; 1-64)")
    s.add_argument("--busy-timeout", type=float, default=5.0, metavar="SECONDS",
                   help="how long a request waits for the study file's write lock before the rater is asked "
                        "to retry (503); default 5")
    s.add_argument("--debug", action="store_true",
                   help="log tracebacks of failed requests (still without tokens or request paths as sent)")

    r = sub.add_parser("results", help="Table 4 (win/loss/tie per comparison), agreement, CSV export")
    r.add_argument("db", help="study file")
    r.add_argument("--csv", help="write one row per rating (with the hidden order revealed) to this CSV")
    r.add_argument("--table-csv", help="write the summary table to this CSV")
    r.add_argument("--json", action="store_true", help="print the summary as JSON instead of a table")


def main(args: argparse.Namespace) -> int:
    return {"create": _create, "serve": _serve, "results": _results}[args.study_command](args)


def _rater_names(args: argparse.Namespace) -> list[str]:
    if args.rater_names is not None:
        names = [n.strip() for n in args.rater_names.split(",")]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise UserError("--rater-names: names must be non-empty and distinct")
        return names
    if args.raters < 1:
        raise UserError(f"--raters must be at least 1, got {args.raters}")
    return [f"rater{i + 1:02d}" for i in range(args.raters)]


def _create(args: argparse.Namespace) -> int:
    _check_out_file(args.links_out, "--links-out")  # before the study file is made, not after
    created = create_study(
        args.out, args.system, args.compare, n_prompts=args.n_prompts, raters=_rater_names(args),
        ratings_per_item=args.ratings_per_item, seed=args.seed, force=args.force,
    )
    links = [(n, f"{args.base_url.rstrip('/')}/r/{t}") for n, t in created.tokens]
    if args.links_out:
        _write_private(Path(args.links_out), "".join(f"{n}\t{link}\n" for n, link in links))
    print(created.summary)
    print("Personal links (send each rater only their own; they are not stored and cannot be shown again):")
    for name, link in links:
        print(f"  {name}\t{link}")
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write links readable only by the owner, atomically (mode 600 is set before the rename)."""
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: no such folder")

    atomic_write_text(path, text, mode=0o600)


def _serve(args: argparse.Namespace) -> int:
    from optune.study import logs, server

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port must be 0-65535, got {args.port}")
    if not 1 <= args.threads <= 64:
        raise UserError(f"--threads must be 1-64, got {args.threads}")
    if not 0 < args.busy_timeout <= 600:
        raise UserError(f"--busy-timeout must be more than 0 and at most 600 seconds, got {args.busy_timeout}")
    if args.host not in LOOPBACK:
        print(f"warning: serving on {args.host}: links carry rater tokens over plain HTTP; "
              "put the page behind HTTPS if it leaves this machine", file=sys.stderr)
    try:
        httpd = server.make_server(args.db, args.host, args.port, threads=args.threads,
                                   busy_timeout=args.busy_timeout)
    except OSError as err:
        raise UserError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err})") from None
    logs.configure(sys.stderr, debug=args.debug)
    where = server.urls(httpd)
    also = f" (also {', '.join(where[1:])})" if len(where) > 1 else ""
    print(f"serving study {args.db} at {where[0]}{also} with {args.threads} threads (Ctrl-C to stop)", flush=True)
    server.run(httpd)
    print("stopped; every rating given so far is saved", file=sys.stderr)
    return 0


def _check_out_file(path: str | None, flag: str) -> None:
    """A file --csv or --table-csv can write, checked before the study file is read: nothing half-done."""
    if path is None:
        return
    if Path(path).is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name")
    parent = Path(path).parent
    if not parent.is_dir():
        problem = "is a file, not a folder" if parent.exists() else "does not exist"
        raise UserError(f"{flag} {path}: the folder {parent} {problem}")


def _results(args: argparse.Namespace) -> int:
    _check_out_file(args.csv, "--csv")
    _check_out_file(args.table_csv, "--table-csv")
    conn = storage.connect(args.db)
    try:
        with storage.reading(args.db):  # checked by connect; a page damaged since is one line too
            ratings = storage.rating_rows(conn)
            table = results.summarise(storage.comparison_rows(conn), ratings)
            progress = storage.rater_progress(conn)
    finally:
        conn.close()
    if args.csv:
        results.write_csv(args.csv, results.export_rows(ratings), results.EXPORT_FIELDS)
    if args.table_csv:
        results.write_csv(args.table_csv, table, results.TABLE_FIELDS)
    if args.json:
        print(json.dumps({"comparisons": table, "raters": [
            {"rater": n, "rated": d, "assigned": t} for n, d, t in progress]}, indent=2))
        return 0
    print(results.format_table(table))
    print("(Win/Loss/Tie: the first system's result; Ratings: given/assigned; Agree: mean pairwise agreement "
          "on items with 2+ ratings)")
    print("Raters: " + ", ".join(f"{n} {d}/{t}" for n, d, t in progress))
    return 0

