"""eval.systems: the saved responses_<side>.json is reused only when it is what a rerun would generate."""

import json

import pytest

from optune.eval.systems import generated_outputs, read_saved
from optune.prompt import Prompt

PROMPTS = [Prompt("1", "Hi?"), Prompt("2", "Why?")]


def generator(calls: list):
    def make():
        calls.append(1)
        return lambda texts: [f"answer {len(calls)} to {t}" for t in texts]
    return make


def test_saved_responses_are_reused_for_the_same_source_and_prompts(tmp_path):
    calls, path = [], tmp_path / "responses_a.json"
    first = generated_outputs(path, {"model": "m"}, PROMPTS, generator(calls))
    assert generated_outputs(path, {"model": "m"}, PROMPTS, generator(calls)) == first
    assert len(calls) == 1
    assert generated_outputs(path, {"model": "other"}, PROMPTS, generator(calls)) == \
        ["answer 2 to Hi?", "answer 2 to Why?"]
    assert generated_outputs(path, {"model": "other"}, PROMPTS[:1], generator(calls)) == ["answer 3 to Hi?"]
    assert json.loads(path.read_text())["rows"] == [{"id": "1", "prompt": "Hi?", "response": "answer 3 to Hi?"}]


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]", '{"source": {"model": "m"}}',
                                  '{"source": {"model": "m"}, "rows": [1, 2]}',
                                  '{"source": {"model": "m"}, "rows": [{"id": "1", "response": 3}, '
                                  '{"id": "2", "response": "b"}]}', '{"source": {"model": "m"}, "rows": [{',
                                  b'{"source": {"model": "m"}, "rows": [\xff]}'])
def test_a_damaged_saved_file_is_regenerated_and_named(tmp_path, capsys, text):
    calls, path = [], tmp_path / "responses_a.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert generated_outputs(path, {"model": "m"}, PROMPTS, generator(calls)) == ["answer 1 to Hi?", "answer 1 to Why?"]
    assert read_saved(path.read_text()).rows[1]["response"] == "answer 1 to Why?"
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"{path} is damaged (") and err[0].endswith(
        "generating the responses again (the same seed and settings)"), err


def test_responses_for_other_settings_are_replaced_without_a_word(tmp_path, capsys):
    calls, path = [], tmp_path / "responses_a.json"
    generated_outputs(path, {"model": "m"}, PROMPTS, generator(calls))
    generated_outputs(path, {"model": "m", "seed": 1}, PROMPTS, generator(calls))
    generated_outputs(path, {"model": "m", "seed": 1}, PROMPTS[:1], generator(calls))
    assert len(calls) == 3 and capsys.readouterr().err == ""


def test_read_saved_tells_the_format_from_jsonl():
    assert read_saved('{"prompt": "a", "response": "b"}\n{"prompt": "c", "response": "d"}\n') is None
    assert read_saved('  {"source": null, "rows": []}').rows == []
