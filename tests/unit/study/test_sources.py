import json

import pytest

from optune.errors import UserError
from optune.study import sources


def test_alpaca_eval_file_uses_generator_as_name(tmp_path):
    p = tmp_path / "out.json"
    p.write_text(json.dumps([{"instruction": " Hi?\r\n", "output": "Hello", "generator": "gpt"}]))
    s = sources.read_system(p)
    assert s.name == "gpt" and s.responses == {"Hi?": "Hello"}


def test_jsonl_file_named_by_stem_and_duplicates_keep_first(tmp_path):
    p = tmp_path / "rho07.jsonl"
    p.write_text('{"prompt": "x", "response": "1"}\n\n{"prompt": "x ", "response": "2"}\n'
                 '{"prompt": "y", "response": ""}\n')
    s = sources.read_system(p)
    assert s.name == "rho07" and s.responses == {"x": "1", "y": ""} and s.duplicates == 1


def test_optune_eval_responses_file(tmp_path):
    """What `optune eval` writes per system (eval.systems.generated_outputs), pretty-printed or not."""
    from optune.eval.systems import generated_outputs
    from optune.prompt import Prompt

    p = tmp_path / "responses_a.json"
    generated_outputs(p, {"model": "m"}, [Prompt("1", "Hi?"), Prompt("2", "Why?")], lambda: lambda ps: ["Hello", "So."])
    s = sources.read_system(p)
    assert s.name == "responses_a" and s.responses == {"Hi?": "Hello", "Why?": "So."}
    p.write_text(json.dumps({"source": {}, "rows": [{"id": "1", "prompt": "x", "response": "y"}, "oops"]}, indent=2))
    with pytest.raises(UserError, match=r"rows\[1\] must be an object"):
        sources.read_system(p)


@pytest.mark.parametrize("content, message", [
    ('{"prompt": "x"}\n', "needs one of the fields output, response"),
    ('{"prompt": 3, "response": "a"}\n', "must be a string"),
    ('{"prompt": "x", "response": "a"}\nnot json\n', ":2: not valid JSON"),
    ('[1, 2]', "bad.jsonl:1: expected a JSON object, got a number"),
    ('', "no responses"),
    ('{"prompt": "  ", "response": "a"}\n', "empty prompt"),
])
def test_bad_files_give_one_clear_error(tmp_path, content, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(UserError, match=message):
        sources.read_system(p)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"responses file .*nope\.json does not exist"):
        sources.read_system(tmp_path / "nope.json")


def test_parse_system_arg():
    assert sources.parse_system_arg("a=b=c.json") == ("a", "b=c.json")
    assert sources.parse_system_arg("path.json") == (None, "path.json")
    with pytest.raises(UserError):
        sources.parse_system_arg("=x.json")


def test_common_prompts_keep_first_file_order():
    a = sources.SystemOutputs("a", "", {"p3": "", "p1": "", "p2": ""})
    b = sources.SystemOutputs("b", "", {"p1": "", "p3": "", "p9": ""})
    assert sources.common_prompts([a, b]) == ["p3", "p1"]
