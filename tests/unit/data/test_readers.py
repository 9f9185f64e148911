"""optune.data.readers: JSON lists and JSONL, plain or gzip, every record with its file:line."""

import gzip
import json

import pytest

from optune.data.readers import read_records
from optune.errors import UserError


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"a": 1}\n\n  \n{"b": "x\u2028y"}\r\n')
    assert list(read_records(path)) == [(f"{path}:1", {"a": 1}), (f"{path}:4", {"b": "x\u2028y"})]


def test_json_list_items_carry_the_line_they_start_on(tmp_path):
    path = tmp_path / "a.json"
    rows = [{"a": [1, 2]}, {"b": "multi\nline"}, {}]
    path.write_text("\n" + json.dumps(rows, indent=2) + "\n")
    located = list(read_records(path))
    assert [r for _, r in located] == rows
    assert [where for where, _ in located] == [f"{path}:3", f"{path}:9", f"{path}:12"]
    (tmp_path / "empty.json").write_text(" [ ]\n")
    assert list(read_records(tmp_path / "empty.json")) == []


def test_gzip_is_detected_from_the_bytes(tmp_path):
    for name, text in [("a.jsonl.gz", '{"a": 1}\n{"a": 2}\n'), ("no-suffix", '[{"a": 1}, {"a": 2}]')]:
        path = tmp_path / name
        path.write_bytes(gzip.compress(text.encode()))
        assert [r["a"] for _, r in read_records(path)] == [1, 2]


@pytest.mark.parametrize("content, message", [
    ('{"a": 1}\n{broken\n', r"f:2: not valid JSON \(Expecting property name"),
    ('{"a": 1}\n[1]\n', "f:2: expected one JSON object per line, got a list"),
    ('[{"a": 1},\n 2]', "f:2: expected a JSON object, got a number"),
    ('[{"a": 1},\n]', r"f:2: not valid JSON \(expected a list item after ','"),
    ('[{"a": 1}\n {"a": 2}]', r"f:2: not valid JSON \(expected ',' or '\]'"),
    ('[{"a": 1}', "f:1: not valid JSON .*found the end of the file"),
    ('[{"a": 1}]\n\nx', "f:3: not valid JSON .*nothing after the list"),
    ('[{"a": \n nope}]', r"f:2: not valid JSON \(Expecting value"),
])
def test_malformed_content_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "f"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        list(read_records(path))


def test_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match=r"^prompt file .*nope\.jsonl does not exist$"):
        read_records(tmp_path / "nope.jsonl", "prompt file")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"a": "caf\xe9"}\n')
    with pytest.raises(UserError, match="cannot read file .*latin1.jsonl"):
        read_records(tmp_path / "latin1.jsonl")
    (tmp_path / "cut.gz").write_bytes(gzip.compress(b'{"a": 1}\n' * 100)[:30])
    with pytest.raises(UserError, match="cannot read file .*cut.gz"):
        read_records(tmp_path / "cut.gz")
