"""Preference readers: HH transcript splitting, JSON/JSONL shapes, drops, malformed lines."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from optune.data.preferences import pairs_from_records, read_preference_file, read_preferences, split_hh_transcripts
from optune.errors import UserError

HH_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "shared", "data", "hh-rlhf")
HH_DIR = os.environ.get("OPTUNE_HH_DIR", os.path.normpath(HH_DIR))


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_hh_split_keeps_history_and_final_answers():
    chosen = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Best rice?\n\nAssistant: Basmati, rinsed."
    rejected = "\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Best rice?\n\nAssistant: Dunno."
    pair = split_hh_transcripts(chosen, rejected)
    assert pair == {
        "prompt": "Best rice?",
        "history": [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}],
        "chosen": "Basmati, rinsed.",
        "rejected": "Dunno.",
    }


def test_hh_split_uses_common_prefix_when_an_answer_invents_turns():
    # The rejected answer contains a made-up "\n\nHuman:" and "\n\nAssistant:" turn of its own;
    # the split must still happen at the last shared assistant marker.
    chosen = "\n\nHuman: Q?\n\nAssistant: A good answer."
    rejected = "\n\nHuman: Q?\n\nAssistant: Meh.\n\nHuman: ok\n\nAssistant: more"
    pair = split_hh_transcripts(chosen, rejected)
    assert pair["prompt"] == "Q?" and pair["history"] == []
    assert pair["chosen"] == "A good answer."
    assert pair["rejected"] == "Meh.\n\nHuman: ok\n\nAssistant: more"


def test_gzip_and_plain_hh_files_read_the_same(tmp_path):
    rows = [
        {"chosen": "\n\nHuman: a\n\nAssistant: yes", "rejected": "\n\nHuman: a\n\nAssistant: no"},
        {"chosen": "\n\nHuman: b\n\nAssistant: same", "rejected": "\n\nHuman: b\n\nAssistant: same"},
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    plain = tmp_path / "t.jsonl"
    plain.write_text(text)
    gz = tmp_path / "t.jsonl.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write(text)
    a, b = read_preference_file(str(plain)), read_preference_file(str(gz))
    assert a.pairs == b.pairs and len(a.pairs) == 1
    assert a.dropped_identical == b.dropped_identical == 1


def test_prompt_chosen_rejected_strings_and_message_lists(tmp_path):
    rows = [
        {"prompt": "Name a fruit", "chosen": "Apple", "rejected": "Car"},
        {
            "prompt": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"},
                       {"role": "user", "content": "a colour?"}],
            "chosen": [{"role": "assistant", "content": "Blue"}],
            "rejected": "Seven",
        },
        {   # no prompt: the shared conversation before the last message is the context
            "chosen": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
            "rejected": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "5"}],
        },
    ]
    data = read_preference_file(_jsonl(tmp_path / "p.jsonl", rows))
    assert [p["prompt"] for p in data.pairs] == ["Name a fruit", "a colour?", "2+2?"]
    assert data.pairs[1]["history"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hey"}]
    assert (data.pairs[1]["chosen"], data.pairs[1]["rejected"]) == ("Blue", "Seven")
    assert (data.pairs[2]["chosen"], data.pairs[2]["rejected"], data.pairs[2]["history"]) == ("4", "5", [])


def test_json_list_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"prompt": "x", "chosen": "a", "rejected": "b"}]))
    assert read_preference_file(str(path)).pairs[0]["chosen"] == "a"


def test_malformed_line_names_file_and_line(tmp_path):
    path = _jsonl(tmp_path / "bad.jsonl", [{"prompt": "x", "chosen": "a", "rejected": "b"}, "", "{not json"])
    with pytest.raises(UserError, match=r"bad\.jsonl:3: not valid JSON"):
        read_preference_file(path)


def test_one_sided_record_is_reported(tmp_path):
    path = _jsonl(tmp_path / "one.jsonl", [{"prompt": "x", "chosen": "a"}])
    with pytest.raises(UserError, match=r"one\.jsonl:1: record has 'chosen' but no 'rejected'"):
        read_preference_file(path)


def test_empty_file_and_all_identical_file_are_errors(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="no usable preference pairs"):
        read_preference_file(str(empty))
    same = _jsonl(tmp_path / "same.jsonl", [{"prompt": "x", "chosen": "a", "rejected": "a"}])
    with pytest.raises(UserError, match=r"1 identical dropped"):
        read_preference_file(same)


def test_non_hh_transcript_without_prompt_is_reported(tmp_path):
    path = _jsonl(tmp_path / "x.jsonl", [{"chosen": "good", "rejected": "bad"}])
    with pytest.raises(UserError, match=r"x\.jsonl:1: .*no '\\n\\nAssistant:' turn"):
        read_preference_file(path)


def test_missing_file_and_wrong_message_role(tmp_path):
    with pytest.raises(UserError, match=r"preference file .*nope\.jsonl does not exist"):
        read_preferences([str(tmp_path / "nope.jsonl")])
    path = _jsonl(tmp_path / "r.jsonl",
                  [{"prompt": "x", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}])
    with pytest.raises(UserError, match=r"r\.jsonl:1: 'chosen' message list must end with an assistant message"):
        read_preference_file(path)


def test_dataset_rows_use_the_same_conversion():
    # The `hf:` path feeds dataset rows through pairs_from_records; test it without `datasets`.
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b", "extra": 1},
            {"prompt": "q", "chosen": "c", "rejected": "c"}]
    data = pairs_from_records(((f"hf:x[{i}]", r) for i, r in enumerate(rows)), "hf:x")
    assert len(data.pairs) == 1 and data.dropped_identical == 1


def test_hf_source_without_datasets_package_is_one_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(UserError, match="needs the 'datasets' package"):
        read_preferences("hf:Anthropic/hh-rlhf:test")


@pytest.mark.slow
def test_real_hh_rlhf_counts():
    base = os.path.join(HH_DIR, "helpful-base", "test.jsonl.gz")
    if not os.path.isfile(base):
        pytest.skip(f"hh-rlhf data not found at {HH_DIR} (set OPTUNE_HH_DIR to the shared hh-rlhf folder)")
    data = read_preference_file(base)
    assert (len(data.pairs), data.dropped_identical) == (2352, 2)
    online = read_preference_file(os.path.join(HH_DIR, "helpful-online", "test.jsonl.gz"))
    rs = read_preference_file(os.path.join(HH_DIR, "helpful-rejection-sampled", "test.jsonl.gz"))
    assert (len(online.pairs), online.dropped_identical) == (1135, 2)
    assert (len(rs.pairs), rs.dropped_identical) == (2717, 32)
    assert all(p["prompt"] and p["chosen"] != p["rejected"] for p in data.pairs)


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def _msg(role, text):
    return {"role": role, "content": text}


def test_parquet_standard_and_conversational_pairs(tmp_path):
    standard = _parquet(tmp_path / "s.parquet", [{"prompt": "q", "chosen": "good", "rejected": "bad",
                                                  "score_chosen": 8.0, "score_rejected": 2.0},
                                                 {"prompt": "same", "chosen": "x", "rejected": "x",
                                                  "score_chosen": 1.0, "score_rejected": 1.0}])
    data = read_preferences(standard)
    assert data.pairs == [{"prompt": "q", "history": [], "chosen": "good", "rejected": "bad", "chosen_reward": 8.0,
                           "rejected_reward": 2.0}]
    assert data.dropped_identical == 1
    # TRL's conversational shape (trl-lib/ultrafeedback_binarized): prompt turns, then one assistant message each
    conv = _parquet(tmp_path / "c.parquet", [{
        "prompt": [_msg("user", "a"), _msg("assistant", "b"), _msg("user", "c")],
        "chosen": [_msg("assistant", "good")], "rejected": [_msg("assistant", "bad")]}])
    # the implicit-prompt shape (Anthropic/hh-rlhf on the hub as conversations): whole conversations only
    implicit = _parquet(tmp_path / "i.parquet", [{
        "chosen": [_msg("user", "c"), _msg("assistant", "good")],
        "rejected": [_msg("user", "c"), _msg("assistant", "bad")]}])
    both = read_preferences([conv, implicit])
    assert both.pairs[0] == {"prompt": "c", "history": [_msg("user", "a"), _msg("assistant", "b")], "chosen": "good",
                             "rejected": "bad"}
    assert both.pairs[1] == {"prompt": "c", "history": [], "chosen": "good", "rejected": "bad"}
    assert both.sources == [conv, implicit]


@pytest.mark.parametrize("shape", ["standard", "conversational"])
def test_arrow_and_hub_path_pairs_and_bad_row(tmp_path, shape):
    import datasets

    def turn(role, text):
        return text if shape == "standard" else [_msg(role, text)]

    rows = [{"prompt": turn("user", "q"), "chosen": turn("assistant", "good"), "rejected": turn("assistant", "bad")},
            {"prompt": turn("user", "q2"), "chosen": turn("assistant", "ok"), "rejected": None}]
    datasets.Dataset.from_list(rows[:1]).save_to_disk(str(tmp_path / "saved"))
    arrow = str(next((tmp_path / "saved").glob("*.arrow")))
    (tmp_path / "hub" / "data").mkdir(parents=True)
    _parquet(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet", rows[:1])
    for src in (arrow, str(tmp_path / "saved"), f"hf:{tmp_path / 'hub'}:train"):
        assert read_preferences(src).pairs == [{"prompt": "q", "history": [], "chosen": "good", "rejected": "bad"}]
    bad = _parquet(tmp_path / "bad.parquet", rows)
    with pytest.raises(UserError, match=r"bad\.parquet\[1\]: record has 'chosen' but no 'rejected'"):
        read_preferences(bad)


@pytest.mark.parametrize("scores,match", [
    ('"score_chosen": NaN, "score_rejected": 1', r"'score_chosen' must be a finite number; got nan"),
    ('"chosen_reward": 1, "rejected_reward": -Infinity', r"'rejected_reward' must be a finite number; got -inf"),
    ('"score_chosen": true, "score_rejected": 0', r"'score_chosen' must be a number; got True"),
    ('"score_chosen": "8", "score_rejected": 2', r"'score_chosen' must be a number; got '8'"),
    ('"score_chosen": [8], "score_rejected": 2', r"'score_chosen' must be a number; got \[8\]"),
    ('"score_chosen": 8', r"record has 'score_chosen' but no 'score_rejected' \(a reward needs both\)"),
    ('"score_chosen": null, "score_rejected": 2',
     r"record has 'score_rejected' but no 'score_chosen' \(a reward needs both\)"),
])
def test_a_bad_score_is_one_error_naming_file_and_line(tmp_path, scores, match):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "q", "chosen": "a", "rejected": "b", "score_chosen": 1, "score_rejected": 0}\n'
                    f'{{"prompt": "q", "chosen": "a", "rejected": "b", {scores}}}\n')
    with pytest.raises(UserError, match=rf"^{path}:2: {match}$"):
        read_preference_file(str(path))


def test_scores_of_transcript_pairs_are_kept_and_checked(tmp_path):
    row = {"chosen": "\n\nHuman: q\n\nAssistant: good", "rejected": "\n\nHuman: q\n\nAssistant: bad",
           "score_chosen": 3, "score_rejected": 1}
    assert read_preference_file(_jsonl(tmp_path / "a.jsonl", [row])).pairs[0]["chosen_reward"] == 3.0
    with pytest.raises(UserError, match="a.jsonl:1: 'score_chosen' must be a finite number"):
        read_preference_file(_jsonl(tmp_path / "a.jsonl", [{**row, "score_chosen": float("nan")}]))


def test_parquet_nan_score_names_the_row(tmp_path):
    pytest.importorskip("pyarrow")
    path = _parquet(tmp_path / "s.parquet", [{"prompt": "q", "chosen": "a", "rejected": "b", "score_chosen": 1.0,
                                             "score_rejected": float("nan")}])
    with pytest.raises(UserError, match=r"s\.parquet.*0.*'score_rejected' must be a finite number; got nan"):
        read_preferences(path)
