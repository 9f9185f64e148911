"""Prompt sets from tabular data and in the conversational shape: what the hub's prompt sets look like.

trl-lib/ultrafeedback-prompt has `prompt` as a conversation; UltraChat has `prompt` text and `messages`;
both are written here in small Parquet/Arrow files (and read through the hub path on a local folder).
"""

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from optune.data.prompts import load_prompts
from optune.errors import UserError
from optune.generation.base import encode_prompt
from optune.models.tiny import build_tokenizer
from optune.prompt import Prompt


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_standard_shape_parquet(tmp_path):
    rows = [{"prompt": "Name a colour.", "prompt_id": "abc", "source": "x"}, {"prompt": "Count to three.",
                                                                          "prompt_id": "def", "source": "y"}]
    recs = load_prompts(parquet(tmp_path / "p.parquet", rows))
    assert recs == [Prompt("abc", "Name a colour.", fields={"prompt_id": "abc", "source": "x"}),
                    Prompt("def", "Count to three.", fields={"prompt_id": "def", "source": "y"})]


def test_conversational_shape_cut_at_last_user_turn(tmp_path):
    rows = [
        {"prompt": [user("Hi")]},
        {"prompt": [{"role": "system", "content": "Be brief."}, user("a"), assistant("b"), user("c")]},
        {"prompt": [user("q1"), assistant("a1"), user("q2"), assistant("reference answer")]},
    ]
    recs = load_prompts(parquet(tmp_path / "c.parquet", rows))
    assert [r.id for r in recs] == ["0", "1", "2"]
    assert recs[0] == Prompt.from_record({"id": "0", "prompt": "Hi"})
    assert recs[1].text == "c"
    assert recs[1].history == [{"role": "system", "content": "Be brief."}, user("a"), assistant("b")]
    assert (recs[2].text, recs[2].history) == ("q2", [user("q1"), assistant("a1")])


def test_conversation_rendered_with_the_chat_template(tmp_path):
    conversation = [{"role": "system", "content": "Be brief."}, user("a"), assistant("b"), user("c"), assistant("d")]
    rec = load_prompts(parquet(tmp_path / "c.parquet", [{"messages": conversation}]))[0]
    tok = build_tokenizer()
    expected = tok.apply_chat_template(conversation[:4], add_generation_prompt=True, tokenize=True, return_dict=False)
    assert encode_prompt(tok, rec, 512) == list(expected)
    assert tok.decode(encode_prompt(tok, rec, 512)).endswith("<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n")


def test_messages_column_and_prompt_field(tmp_path):
    # UltraChat's shape: `prompt` text and `messages`; by default the prompt column wins
    rows = [{"prompt": "first question", "messages": [user("first question"), assistant("x")],
             "question": "other text"}]
    src = parquet(tmp_path / "u.parquet", rows)
    assert load_prompts(src)[0].text == "first question"
    rec = load_prompts(src, field="messages")[0]
    assert rec.text == "first question" and "messages" not in rec.fields  # the conversation became the prompt
    assert load_prompts(src, field="question")[0].text == "other text"
    only_messages = parquet(tmp_path / "m.parquet", [{"messages": [user("hey")]}])
    assert load_prompts(only_messages)[0].text == "hey"


def test_nested_columns_are_not_kept_from_tables(tmp_path):
    rows = [{"prompt": "q", "chosen": [assistant("big")], "score": 1.5}]
    assert load_prompts(parquet(tmp_path / "p.parquet", rows)) == [Prompt("0", "q", fields={"score": 1.5})]


@pytest.mark.parametrize("shape", ["standard", "conversational"])
def test_arrow_save_to_disk_and_hub_path(tmp_path, shape):
    rows = [{"prompt": f"q{i}" if shape == "standard" else [user(f"q{i}")], "id": f"x{i}"} for i in range(4)]
    ds = datasets.Dataset.from_list(rows)
    ds.save_to_disk(str(tmp_path / "saved"))
    arrow = next((tmp_path / "saved").glob("*.arrow"))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    parquet(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet", rows)
    for src in (str(arrow), str(tmp_path / "saved"), f"hf:{tmp_path / 'hub'}", f"hf:{tmp_path / 'hub'}:train"):
        recs = load_prompts(src, limit=3)
        assert [(r.id, r.text) for r in recs] == [("x0", "q0"), ("x1", "q1"), ("x2", "q2")], src


# (rows, error after "FILE[1]: ") for a set whose second row has no usable prompt
BAD = {
    "empty text": ([{"prompt": "fine"}, {"prompt": "  "}], r"no prompt text \(an empty 'prompt' field\)"),
    "null": ([{"prompt": "fine"}, {"prompt": None}], r"no prompt text: 'prompt' must be a non-empty string or a "
                                                     r"conversation"),
    "no user turn": ([{"prompt": [user("fine")]}, {"prompt": [assistant("only me")]}],
                     r"the conversation has no user turn"),
    "empty list": ([{"prompt": [user("fine")]}, {"prompt": []}], r"no prompt text: 'prompt' must be a non-empty"),
    "empty last user turn": ([{"prompt": [user("fine")]}, {"prompt": [user(""), assistant("x")]}],
                             r"the last user turn of the conversation is empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_rows_name_the_row(tmp_path, case):
    rows, message = BAD[case]
    with pytest.raises(UserError, match=r"b\.parquet\[1\]: " + message):
        load_prompts(parquet(tmp_path / "b.parquet", rows))


def test_no_prompt_column_names_the_fields(tmp_path):
    with pytest.raises(UserError, match=r"b\.parquet\[0\]: no 'prompt' or 'messages' field \(fields: text\); "
                                        r"name the prompt's field with data.prompt_field"):
        load_prompts(parquet(tmp_path / "b.parquet", [{"text": "x"}]))
    (tmp_path / "b.jsonl").write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(UserError, match=r"b\.jsonl:2: no 'prompt' or 'messages' field"):
        load_prompts(str(tmp_path / "b.jsonl"))


def test_prompt_field_missing_and_duplicate_ids(tmp_path):
    src = parquet(tmp_path / "p.parquet", [{"prompt": "a", "id": 1}, {"prompt": "b", "id": 1}])
    with pytest.raises(UserError,
                       match=r"p\.parquet\[0\]: no 'question' field \(data.prompt_field\); fields: id, prompt"):
        load_prompts(src, field="question")
    with pytest.raises(UserError, match="duplicate prompt id '1'"):
        load_prompts(src)


def test_jsonl_in_the_conversational_shape(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [{"messages": [user("a"), assistant("b"), user("c")]},
                                                           {"prompt": [user("d")], "id": "z"}]))
    recs = load_prompts(str(path))
    assert [(r.id, r.text, (r.history or None)) for r in recs] == [("0", "c", [user("a"), assistant("b")]),
                                                                        ("z", "d", None)]
