"""--out DIR of optune export and optune report: a file, or a folder of the user's, is refused with one line
(exit 2, nothing written) unless --overwrite; a folder the command wrote before is written again."""

from __future__ import annotations

import pytest

from optune.cli import main
from optune.errors import UserError
from optune.store.outdir import OUT_MARKER, check_out_dir, check_out_file, out_dir, written_by
from tests.unit.report.test_export import make_run, online_states


def listing(folder):
    return sorted((p.relative_to(folder).as_posix(), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


def test_a_new_empty_or_own_folder_is_fine_and_marked(tmp_path):
    for out in (tmp_path / "new" / "deep", tmp_path / "empty"):
        (tmp_path / "empty").mkdir(exist_ok=True)
        with out_dir(out, "optune export") as folder:
            (folder / "a.txt").parent.mkdir(parents=True, exist_ok=True)
            (folder / "a.txt").write_text("x")
        assert written_by(out) == "optune export"
        check_out_dir(out, "optune export")  # again: its own
        with pytest.raises(UserError, match="already holds files optune report did not write"):
            check_out_dir(out, "optune report")


def test_a_folder_left_half_written_is_still_the_commands_own(tmp_path):
    out = tmp_path / "o"
    with pytest.raises(RuntimeError), out_dir(out, "optune report"):
        out.mkdir()
        (out / "one.png").write_text("x")
        raise RuntimeError("killed midway")
    check_out_dir(out, "optune report")


def test_nothing_written_fails_without_making_the_folder(tmp_path):
    with pytest.raises(RuntimeError), out_dir(tmp_path / "o", "optune report"):
        raise RuntimeError("bad input")
    assert not (tmp_path / "o").exists()


def test_a_parent_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "f").write_text("mine")
    with pytest.raises(UserError, match=r"--out .*/f/o: .*/f is a file, not a directory"):
        check_out_dir(tmp_path / "f" / "o", "optune export")


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run", online_states()).root


@pytest.mark.parametrize("command", ["export", "report"])
def test_out_refuses_a_file_or_the_users_folder(tmp_path, capsys, run, command):
    if command == "report":
        pytest.importorskip("matplotlib")
    (tmp_path / "file").write_text("mine")
    users = tmp_path / "users"
    users.mkdir()
    (users / ("preferences.jsonl" if command == "export" else "report.md")).write_text("my own work\n")
    before = listing(tmp_path)
    for out, message in [(tmp_path / "file", f"--out {tmp_path / 'file'} is a file, not a folder; choose another "
                                              "--out"),
                         (users, f"--out {users} already holds files optune {command} did not write ("
                                 f"{'preferences.jsonl' if command == 'export' else 'report.md'}); choose a new or "
                                 "empty folder, or pass --overwrite to write into it anyway")]:
        capsys.readouterr()
        assert main([command, str(run), "--out", str(out)]) == 2
        assert capsys.readouterr().err.strip() == f"optune {command}: error: {message}"
        assert listing(tmp_path) == before  # nothing written
    assert main([command, str(run), "--out", str(users), "--overwrite"]) == 0
    assert written_by(users) == f"optune {command}"
    assert main([command, str(run), "--out", str(users)]) == 0  # its own now: no --overwrite needed
    assert main([command, str(run), "--out", str(tmp_path / "file"), "--overwrite"]) == 2  # never over a file
    assert (tmp_path / "file").read_text() == "mine" and not (tmp_path / "file" / OUT_MARKER).exists()


def test_a_result_file_is_not_written_onto_a_folder_or_under_a_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    check_out_file(tmp_path / "new" / "r.json")
    with pytest.raises(UserError, match=r"--out .* is a folder; name the result file to write"):
        check_out_file(tmp_path)
    # optune bench checks it before running the benchmarks (here: before lm-eval is even imported)
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert main(["bench", str(tmp_path / "ckpt"), "--out", str(tmp_path / "f" / "r.json")]) == 2
    assert "f is a file, not a directory" in capsys.readouterr().err
