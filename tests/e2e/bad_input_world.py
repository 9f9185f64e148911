"""The files the bad-input sweep (tests/e2e/test_bad_input_sweep.py) points commands at, made fresh in each
case's folder: good and broken prompt and preference files, reward functions that misbehave, a policy folder
with a broken config.json, run directories (finished, damaged, not a run) and study files (good, garbage,
missing a table). `make_world(root)` returns the placeholders the case table uses ({name} -> path)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import yaml

from optune.config.run import load_config, to_dict
from tests.conftest import REPO

TINY = REPO / "configs" / "tiny.yaml"
DEEP = 100_000  # nesting levels: deeper than Python's recursion limit

PAIR = {"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No."}
REWARDS = '''
import sys

def boom(p, r):
    raise ValueError("no reward\\nfor you")

def scalar(p, r):
    return 0.5

def mapping(p, r):
    return {i: 1.0 for i in range(len(r))}

def nan(p, r):
    return [float("nan")] * len(r)

def short(p, r):
    return [1.0]

def words(p, r):
    return ["good"] * len(r)

def exits(p, r):
    sys.exit(3)

not_a_function = 42
'''


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return path


def _jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _pref(**scores) -> str:
    """One preference pair with the given scores, written as raw JSON text (NaN, 1e400 stay as written)."""
    extra = "".join(f', "{k}": {v}' for k, v in scores.items())
    return json.dumps(PAIR)[:-1] + extra + "}\n"


def _prompt_files(root: Path) -> None:
    good = [{"id": f"p{i}", "prompt": f"Question {i}?"} for i in range(4)]
    _write(root / "prompts.jsonl", _jsonl(good))
    _write(root / "empty.jsonl", "")
    _write(root / "blank.jsonl", "\n\n")
    _write(root / "badline.jsonl", json.dumps(good[0]) + "\n{\"id\": \"p1\", \"prompt\": \n")
    _write(root / "numbers.json", "[1, 2, 3]")
    _write(root / "strings.json", '["a", "b"]')
    _write(root / "object.json", '{"prompt": "one"}')
    _write(root / "surrogate.jsonl", '{"id": "a", "prompt": "broken \\ud800 text"}\n')
    _write(root / "deep.json", "[" * DEEP + "]" * DEEP)
    _write(root / "deep.jsonl", '{"id": "a", "prompt": ' + "[" * DEEP + "]" * DEEP + "}\n")
    _write(root / "digits.jsonl", '{"id": "a", "prompt": "hi", "n": ' + "9" * 5000 + "}\n")
    _write(root / "emoji.jsonl", '{"id": "a", "prompt": "a paired surrogate \\ud83d\\ude00 is a character"}\n')
    _write(root / "noprompt.jsonl", '{"id": "a", "text": "hi"}\n')
    _write(root / "nulls.jsonl", '{"id": "a", "prompt": null}\n')
    _write(root / "nouser.jsonl", json.dumps({"prompt": [{"role": "assistant", "content": "hi"}]}) + "\n")
    _write(root / "binary.jsonl", b"\xff\xfe\x00garbage\x80\n")
    _write(root / "corrupt.parquet", b"PAR1" + b"\x13\x37 not a parquet file " * 8 + b"PAR1")
    _write(root / "corrupt.arrow", b"ARROW1\x00\x00" + b"\x00\xff" * 40)
    _parquet_with_a_bad_page(root / "badpage.parquet")


def _parquet_with_a_bad_page(path: Path) -> None:
    """A Parquet file whose footer reads but whose data page is overwritten with garbage."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"prompt": [f"question number {i} " * 20 for i in range(50)]}), path,
                   compression="none")
    data = bytearray(path.read_bytes())
    data[8:400] = b"\xff" * 392
    path.write_bytes(bytes(data))


def _preference_files(root: Path) -> None:
    _write(root / "pairs.jsonl", _pref(score_chosen=1.0, score_rejected=0.0) * 4)
    _write(root / "pref_nan.jsonl", _pref(score_chosen="NaN", score_rejected=0))
    _write(root / "pref_inf.jsonl", _pref(score_chosen=1, score_rejected="-Infinity"))
    _write(root / "pref_str.jsonl", _pref(score_chosen='"high"', score_rejected=0))
    _write(root / "pref_bool.jsonl", _pref(score_chosen="true", score_rejected=0))
    _write(root / "pref_huge.jsonl", _pref(score_chosen="1e400", score_rejected=0))
    _write(root / "pref_bigint.jsonl", _pref(score_chosen="1" + "0" * 400, score_rejected=0))
    _write(root / "pref_digits.jsonl", _pref(score_chosen="7" * 5000, score_rejected=0))
    _write(root / "pref_badline.jsonl", _pref() + '{"prompt": "p", "chosen": \n')
    _write(root / "pref_reward_nan.jsonl", _pref(chosen_reward="NaN", rejected_reward=0))
    _write(root / "pref_norejected.jsonl", json.dumps({"prompt": "p", "chosen": "a"}) + "\n")
    _write(root / "pref_surrogate.jsonl", '{"prompt": "p", "chosen": "a \\udc00", "rejected": "b"}\n')
    _write(root / "pref_chosen_list.jsonl", json.dumps({"prompt": "p", "chosen": [1, 2], "rejected": "b"}) + "\n")


def _runs(root: Path) -> None:
    cfg = to_dict(load_config(str(TINY), [f"output_dir={root / 'run'}"]))
    run = root / "run"  # a run with iteration 0 of 2 finished (as a kill leaves it)
    _write(run / ".optune-run", "optune run directory\n")
    _write(run / "config.yaml", yaml.safe_dump(cfg))
    _write(run / "iter_000" / "metrics.json", json.dumps({"iteration": 0, "time/elapsed_s": 1.0}))
    _write(root / "badcfg" / ".optune-run", "optune run directory\n")
    _write(root / "badcfg" / "config.yaml", "iterations: [2\n")
    _write(root / "nocfg" / ".optune-run", "optune run directory\n")
    _write(root / "notrun" / "notes.txt", "mine")
    (root / "emptydir").mkdir()
    _write(root / "rmdir" / "reward_config.yaml", "lr: [\n")  # a reward training directory, damaged


def _study_files(root: Path) -> None:
    from optune.study.create import create_study

    for name, word in (("sys_a", "yes"), ("sys_b", "no")):
        _write(root / f"{name}.jsonl", _jsonl({"id": f"p{i}", "prompt": f"Question {i}?", "response": f"{word} {i}"}
                                                for i in range(4)))
    _write(root / "sys_one.jsonl", _jsonl({"prompt": f"Other {i}?", "response": "x"} for i in range(4)))
    _write(root / "sys_bad.jsonl", "{not json\n")
    create_study(str(root / "study.db"), [str(root / "sys_a.jsonl"), str(root / "sys_b.jsonl")], None,
                 n_prompts=2, raters=["r1", "r2"], ratings_per_item=1, seed=0, force=False)
    create_study(str(root / "broken.db"), [str(root / "sys_a.jsonl"), str(root / "sys_b.jsonl")], None,
                 n_prompts=2, raters=["r1", "r2"], ratings_per_item=1, seed=0, force=False)
    conn = sqlite3.connect(root / "broken.db")
    conn.execute("DROP TABLE ratings")
    conn.commit()
    conn.close()
    conn = sqlite3.connect(root / "other.db")
    conn.execute("CREATE TABLE things (x)")
    conn.commit()
    conn.close()
    _write(root / "garbage.db", b"SQLite format 3\x00" + b"\xff" * 200)
    _write(root / "text.db", "hello, I am not a database\n")


def make_world(root: Path) -> dict[str, str]:
    """Every input of the case table under `root`; returns {placeholder: path}."""
    _write(root / "afile", "x")
    _write(root / "full" / "notes.txt", "mine")
    _write(root / "rw.py", REWARDS)
    _write(root / "broken.py", "x = 1 / 0\n")
    _write(root / "leaves.py", "import sys\nsys.exit(4)\n\ndef f(p, r):\n    return [0.0] * len(r)\n")
    _write(root / "policy" / "config.json", '{"model_type": "lla')  # cut short
    _write(root / "listpolicy" / "config.json", "[1, 2]")
    _write(root / "fakemodel" / "config.json", '{"model_type": "llama"}')  # reads as a checkpoint; no weights
    _write(root / "dup.yaml", "iterations: 2\nseed: 1\niterations: 3\n")
    _write(root / "list.yaml", "- iterations\n- 2\n")
    _write(root / "syntax.yaml", "iterations: 2\npolicy:\n  model: tiny:llama\n  dtype: [float32\n")
    _write(root / "unknown.yaml", "iterations: 2\nselection:\n  rhoo: 0.5\n")
    _write(root / "badreward.yaml", "backend: remote\nurl: null\n")
    _write(root / "rm_dup.yaml", "lr: 1.0e-5\nlr: 2.0e-5\n")
    _prompt_files(root)
    _preference_files(root)
    _runs(root)
    _study_files(root)
    return {"tmp": str(root), "tiny": str(TINY), "new": str(root / "new"), "file": str(root / "afile"),
            "full": str(root / "full"), "run": str(root / "run"), "missing": str(root / "missing")}
