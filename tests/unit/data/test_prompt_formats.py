"""Prompt-set readers: every format of shared/data, on small files written here and on the real files."""

import json
from pathlib import Path

import pytest

from optune.data.prompts import detect_format, read_prompts
from optune.errors import UserError
from optune.prompt import Prompt

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_lima_splits_on_newline_only(tmp_path):
    # U+2028 inside a prompt would be a line break for str.splitlines; it must stay in the prompt.
    p = tmp_path / "lima.jsonl"
    p.write_text(json.dumps({"conversations": "a\u2028b"}, ensure_ascii=False) + "\n"
                 + json.dumps({"conversations": "second"}) + "\n", encoding="utf-8")
    recs = read_prompts(p)
    assert [r.text for r in recs] == ["a\u2028b", "second"]
    assert [r.id for r in recs] == ["lima_0", "lima_1"]


def test_self_instruct_joins_first_instance_input(tmp_path):
    p = _jsonl(tmp_path / "si.jsonl", [
        {"id": "t0", "instruction": "Fix the grammar.", "instances": [{"input": "He go.", "output": "x"},
                                                                       {"input": "other", "output": "y"}]},
        {"id": "t1", "instruction": "Tell a joke.", "instances": [{"input": "", "output": "x"}]}])
    recs = read_prompts(p)
    assert recs[0] == Prompt.from_record({"id": "t0", "prompt": "Fix the grammar.\n\nHe go."})
    assert recs[1].text == "Tell a joke."


def test_formats_detected_and_read(tmp_path):
    cases = {
        "fastchat": ([{"question_id": 7, "category": "generic", "turns": ["first", "second"]}], "7", "first"),
        "koala": ([{"id": "koala_3", "prompt": "hi"}], "koala_3", "hi"),
        "wizardlm": ([{"idx": 2, "Skill": "Math", "Difficulty": 1, "Instruction": "add"}], "wizardlm_2", "add"),
        "prompt": ([{"prompt": "plain"}], "0", "plain"),
    }
    for fmt, (rows, rid, prompt) in cases.items():
        p = _jsonl(tmp_path / f"{fmt}.jsonl", rows)
        assert detect_format(p) == fmt
        rec = read_prompts(p)[0]
        assert (rec.id, rec.text) == (rid, prompt)
    dolly = tmp_path / "dolly.json"
    dolly.write_text(json.dumps([{"instruction": "Summarise.", "category": "summarization", "input": "Text."}]))
    assert detect_format(dolly) == "dolly"
    assert read_prompts(dolly)[0].text == "Summarise.\n\nText."
    ae = tmp_path / "ae.json"
    ae.write_text(json.dumps([{"dataset": "vicuna", "instruction": "Q?", "output": "A.", "generator": "g"}]))
    assert detect_format(ae) == "alpaca_eval"
    assert read_prompts(ae)[0] == Prompt.from_record({"id": "alpaca_eval_0", "prompt": "Q?", "dataset": "vicuna",
                                                      "output": "A.", "generator": "g"})


@pytest.mark.parametrize("content,match", [
    ('{"prompt": "a"}\nnot json\n', "bad.jsonl:2: not valid JSON"),
    ('{"prompt": ""}\n', "no prompt text"),
    ('{"other": 1}\n', "no prompt text"),
    ('{"id": "x", "prompt": "a"}\n{"id": "x", "prompt": "b"}\n', "duplicate prompt id"),
])
def test_bad_files_give_one_clear_error(tmp_path, content, match):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(UserError, match=match):
        read_prompts(p)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_prompts(tmp_path / "nope.jsonl")
    p = _jsonl(tmp_path / "a.jsonl", [{"prompt": "x"}])
    with pytest.raises(UserError, match="unknown prompt format"):
        read_prompts(p, fmt="csv")


REAL = [
    ("Cherry_LLM/lima_test_set.jsonl", "lima", 300),
    ("alpaca_eval/text_davinci_003/model_outputs.json", "alpaca_eval", 805),
    ("fastchat/vicuna_bench/question.jsonl", "fastchat", 80),
    ("koala-test-set/koala_test_set.jsonl", "koala", 180),
    ("self-instruct/user_oriented_instructions.jsonl", "self_instruct", 252),
    ("WizardLM/WizardLM_testset.jsonl", "wizardlm", 218),
    ("alpagasus/dolly_3k.json", "dolly", 2996),
]


@pytest.mark.parametrize("rel,fmt,count", REAL)
def test_real_sets(rel, fmt, count):
    path = DATA / rel
    if not path.is_file():
        pytest.skip(f"shared data file absent: {path}")
    assert detect_format(path) == fmt
    recs = read_prompts(path)
    assert len(recs) == count
    assert all(isinstance(r.text, str) and r.text.strip() for r in recs)


def test_real_self_instruct_matches_alpaca_eval_merge():
    si, ae = DATA / REAL[4][0], DATA / REAL[1][0]
    if not (si.is_file() and ae.is_file()):
        pytest.skip("shared data files absent")
    alpaca = {r.text for r in read_prompts(ae) if r.fields.get("dataset") == "selfinstruct"}
    ours = [r.text for r in read_prompts(si)]
    # AlpacaEval merged instruction and input of these 252 tasks; most match our join exactly.
    assert sum(p in alpaca for p in ours) > 200


def test_garbage_first_line_is_a_user_error(tmp_path):
    p = tmp_path / "g.jsonl"
    p.write_text("hello\n")
    with pytest.raises(UserError, match=r"g\.jsonl:1: not valid JSON"):
        read_prompts(p)


def test_a_json_list_of_prompt_records_is_the_generic_format(tmp_path):
    """README, Prompts: a JSON file may be a list of {"id", "prompt"} records (or conversations)."""
    plain = tmp_path / "p.json"
    plain.write_text(json.dumps([{"id": "a", "prompt": "first"}, {"id": "b", "prompt": "second", "topic": "t"}],
                                indent=2))
    assert detect_format(plain) == "prompt"
    assert [(p.id, p.text) for p in read_prompts(plain)] == [("a", "first"), ("b", "second")]
    assert read_prompts(plain)[1].fields == {"topic": "t"}
    chat = tmp_path / "c.json"
    chat.write_text(json.dumps([{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}]))
    assert detect_format(chat) == "prompt"
    assert read_prompts(chat)[0].messages() == [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    koala = tmp_path / "k.json"
    koala.write_text(json.dumps([{"id": "koala_1", "prompt": "hi"}]))
    assert detect_format(koala) == "koala"
    other = tmp_path / "o.json"
    other.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(UserError, match=r"o\.json:1: no prompt text: records need a 'prompt' or 'messages' field"):
        read_prompts(other)
