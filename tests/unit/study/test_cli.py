import json
import socket
import stat

import pytest

from optune.cli import main
from optune.study import storage

from .conftest import write_outputs


def _create(tmp_path, *extra):
    a, b = write_outputs(tmp_path)
    return main(["study", "create", str(tmp_path / "s.db"), "--system", str(a), "--system", f"BETA={b}",
                 "--n-prompts", "4", "--raters", "2", "--ratings-per-item", "2", *extra])


def test_create_prints_working_personal_links(tmp_path, capsys):
    assert _create(tmp_path, "--base-url", "http://example.test:9/", "--links-out", str(tmp_path / "links.tsv")) == 0
    out = capsys.readouterr().out
    assert "1 comparison(s) x 4 prompts (drawn from 6 answered by all) = 4 pairs; 2 raters" in out
    links = [line.split("\t")[1] for line in out.splitlines() if line.startswith("  rater")]
    assert len(links) == 2 and all(link.startswith("http://example.test:9/r/") for link in links)
    conn = storage.connect(tmp_path / "s.db")
    assert [storage.rater_by_token(conn, link.rsplit("/", 1)[1]).name for link in links] == ["rater01", "rater02"]
    saved = tmp_path / "links.tsv"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert saved.read_text().splitlines()[0] == f"rater01\t{links[0]}"


def test_create_refuses_to_overwrite_a_study(tmp_path, capsys):
    assert _create(tmp_path) == 0
    before = (tmp_path / "s.db").read_bytes()
    assert _create(tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optune study: error:") and "pass --force" in err and "\n" not in err
    assert (tmp_path / "s.db").read_bytes() == before
    assert _create(tmp_path, "--force") == 0


def test_create_input_errors_are_one_line(tmp_path, capsys):
    a, b = write_outputs(tmp_path)
    cases = [
        (["--system", str(a), "--system", str(b), "--n-prompts", "7"], "more than the 6 prompts"),
        (["--system", str(a), "--system", str(b), "--system", f"C={b}", "--compare", "ALPHA-7B:beta"],
         "are in no --compare"),
        (["--system", str(a), "--system", str(a)], "distinct"),
        (["--system", str(a), "--system", str(tmp_path / "missing.json")], "missing.json does not exist"),
        (["--system", str(a), "--system", str(b), "--raters", "2", "--ratings-per-item", "3"], "ratings-per-item"),
        (["--system", str(a), "--system", str(b), "--rater-names", "ann,,bob"], "rater-names"),
    ]
    for args, message in cases:
        assert main(["study", "create", str(tmp_path / "x.db"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert not (tmp_path / "x.db").exists()


def test_results_table_json_and_csv(tmp_path, capsys):
    assert _create(tmp_path) == 0
    out = capsys.readouterr().out
    token = out.split("/r/")[1].split()[0]
    conn = storage.connect(tmp_path / "s.db")
    rater = storage.rater_by_token(conn, token)
    item = storage.next_item(conn, rater.id)
    storage.record_rating(conn, rater.id, item["assignment"], "tie")
    assert main(["study", "results", str(tmp_path / "s.db"), "--csv", str(tmp_path / "r.csv"),
                 "--table-csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "ALPHA-7B vs BETA" in out and "100.00" in out and "1/8" in out and "rater01 1/4" in out
    assert (tmp_path / "r.csv").read_text().count("\n") == 2
    assert "tie_pct" in (tmp_path / "t.csv").read_text()
    assert main(["study", "results", str(tmp_path / "s.db"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["comparisons"][0]["tie_pct"] == 100.0 and data["comparisons"][0]["ratings"] == 1


def test_serve_and_results_reject_a_missing_study(tmp_path, capsys):
    assert main(["study", "serve", str(tmp_path / "none.db")]) == 2
    assert "no such study file" in capsys.readouterr().err
    assert main(["study", "results", str(tmp_path / "none.db")]) == 2


def test_serve_and_results_refuse_a_study_missing_tables_in_one_line(tmp_path, capsys):
    import sqlite3

    assert _create(tmp_path) == 0
    db = tmp_path / "s.db"
    conn = sqlite3.connect(db)
    conn.execute("DROP TABLE ratings")
    conn.execute("ALTER TABLE systems DROP COLUMN source")
    conn.commit()
    conn.close()
    capsys.readouterr()
    message = (f"{db}: a damaged optune study file: it lacks ratings, systems.source; restore it from a copy, "
               "or make a new study with `optune study create`")
    for command in ("results", "serve"):
        assert main(["study", command, str(db)]) == 2
        assert capsys.readouterr().err.strip() == f"optune study: error: {message}"


def test_serve_options_are_checked_in_one_line(tmp_path, capsys):
    assert _create(tmp_path) == 0
    capsys.readouterr()
    db = str(tmp_path / "s.db")
    for args, message in [(["--threads", "0"], "--threads must be 1-64, got 0"),
                          (["--busy-timeout", "0"], "--busy-timeout must be more than 0"),
                          (["--busy-timeout", "nan"], "--busy-timeout must be more than 0"),
                          (["--port", "70000"], "--port must be 0-65535")]:
        assert main(["study", "serve", db, *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("optune study: error:") and message in err and "\n" not in err, err


def test_serve_on_a_taken_port_is_one_line(tmp_path, capsys):
    assert _create(tmp_path) == 0
    capsys.readouterr()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["study", "serve", str(tmp_path / "s.db"), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"optune study: error: cannot listen on 127.0.0.1:{port}") and "\n" not in err, err


def _cut(db):
    data = db.read_bytes()
    db.write_bytes(data[:len(data) // 2])


def _spoil_last_page(db):
    data = db.read_bytes()
    db.write_bytes(data[:-4096] + b"\x11" * 4096)  # a page only a query that reaches it would meet


def _bad_choice(db):
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA ignore_check_constraints=ON")  # as an edit by hand would
    conn.execute("INSERT INTO ratings VALUES (1, 'maybe', '2026-01-01')")
    conn.commit()
    conn.close()


@pytest.mark.parametrize("spoil, problem", [
    (_cut, "database disk image is malformed"), (_spoil_last_page, "database disk image is malformed"),
    (_bad_choice, "SQLite's check finds a problem: CHECK constraint failed in ratings"),
])
def test_serve_and_results_name_a_damaged_study_file_in_one_line(tmp_path, capsys, spoil, problem):
    assert _create(tmp_path) == 0
    db = tmp_path / "s.db"
    assert main(["study", "results", str(db)]) == 0
    spoil(db)
    capsys.readouterr()
    message = (f"{db}: a damaged optune study file ({problem}); restore it from a copy, or make a new study with "
               "`optune study create`")
    for command in ("results", "serve"):
        assert main(["study", command, str(db), "--port", "0"][:3 if command == "results" else 5]) == 2
        assert capsys.readouterr().err.strip() == f"optune study: error: {message}"


def test_a_file_that_is_no_database_is_not_a_study(tmp_path, capsys):
    db = tmp_path / "s.db"
    db.write_bytes(b"\x00\xffnot what was written\x80" * 100)
    assert main(["study", "results", str(db)]) == 2
    assert capsys.readouterr().err.strip() == (f"optune study: error: {db}: not an optune study file (file is not a "
                                               "database)")
