"""Small systems' output files and a ready study, shared by the study tests."""

from __future__ import annotations

import json

import pytest

from optune.study.create import create_study

SCRIPT = "<script>window.__pwned = 1</script>"


def write_outputs(tmp_path, n_prompts: int = 6):
    """Two systems on the same prompts: one AlpacaEval JSON, one JSONL, names kept distinctive."""
    a = tmp_path / "alpha.json"
    a.write_text(json.dumps([
        {"instruction": f"Question {i}: what is {i} + {i}?", "output": f"Alpha answer {i}\nsecond line",
         "generator": "ALPHA-7B"}
        for i in range(n_prompts)
    ]))
    b = tmp_path / "beta.jsonl"
    with b.open("w") as fh:
        for i in range(n_prompts):
            text = f"Beta answer {i} {SCRIPT}" if i % 2 == 0 else f"Beta answer {i}"
            fh.write(json.dumps({"prompt": f"Question {i}: what is {i} + {i}?", "response": text}) + "\n")
    return a, b


@pytest.fixture
def study(tmp_path):
    """(db path, {rater: token}) for a 1-comparison study: 6 prompts, 3 raters, 2 ratings per pair."""
    a, b = write_outputs(tmp_path)
    db = tmp_path / "study.db"
    created = create_study(db, [str(a), f"BETA-13B={b}"], None, n_prompts=6, raters=["r1", "r2", "r3"],
                           ratings_per_item=2, seed=0)
    return db, dict(created.tokens)
