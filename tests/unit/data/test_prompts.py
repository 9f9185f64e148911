import json

import pytest

from optune.data.prompts import load_prompts
from optune.errors import UserError


def write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_jsonl_and_alpaca_json(tmp_path):
    p = write(tmp_path / "a.jsonl", [{"id": "x", "prompt": "hi"}, {"prompt": "there"}])
    assert [(r.id, r.text) for r in load_prompts(p)] == [("x", "hi"), ("1", "there")]
    j = tmp_path / "d.json"
    j.write_text(json.dumps([{"instruction": "Sum", "input": "1 2", "category": "qa"},
                             {"instruction": "Go", "input": "", "category": "qa"}]))
    assert [r.text for r in load_prompts(str(j))] == ["Sum\n\n1 2", "Go"]


def test_limit(tmp_path):
    p = write(tmp_path / "a.jsonl", [{"prompt": str(i)} for i in range(5)])
    assert len(load_prompts(p, limit=3)) == 3


@pytest.mark.parametrize("rows,match", [
    ([], "empty"),
    ([{"id": "a", "prompt": ""}], "no prompt text"),
    ([{"prompt": "  "}], "no prompt text"),
    ([{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}], "duplicate prompt id 'a'"),
    (["just a string"], "one JSON object per line"),
])
def test_bad_records(tmp_path, rows, match):
    with pytest.raises(UserError, match=match):
        load_prompts(write(tmp_path / "p.jsonl", rows))


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_prompts(str(tmp_path / "nope.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{broken\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: not valid JSON"):
        load_prompts(str(bad))
    (tmp_path / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(UserError, match="cannot read"):
        load_prompts(str(tmp_path / "latin1.jsonl"))


def test_unknown_builtin():
    with pytest.raises(UserError, match="unknown built-in prompt set"):
        load_prompts("verifiable:test")
