"""The verifiable task's public API (load, reward, reward_many) and its generated prompt files."""

import importlib.util
import itertools
import math
import random
from pathlib import Path

import pytest

from optune.errors import UserError
from optune.tasks import verifiable
from optune.tasks.verifiable import constraints as C

REPO = Path(__file__).resolve().parents[3]
MAX50 = {"kind": "word_count", "max_words": 50}


def words(n: int, sep: str = " ") -> str:
    return sep.join(["word"] * n)


# --- the constraint factor (the whole reward before issue 23; now multiplied by the answer factor) ---

def test_constraint_score_single_numeric_constraint_hand_worked():
    record = {"id": "r", "constraints": [MAX50]}
    assert verifiable.constraint_score(record, words(50)) == 1.0
    assert verifiable.constraint_score(record, words(60)) == pytest.approx(0.5 * math.exp(-10 / 50))
    assert verifiable.constraint_score(record, words(200)) == pytest.approx(0.5 * math.exp(-150 / 50))
    assert verifiable.constraint_score(record, words(60)) > verifiable.constraint_score(record, words(200))


def test_constraint_score_two_constraints_hand_worked():
    record = {"id": "r", "constraints": [MAX50, {"kind": "no_commas"}]}
    # 60 words, no comma: one satisfied, the failed word count is close: (1 + 0.5 * e^-0.2) / 2
    assert verifiable.constraint_score(record, words(60)) == pytest.approx((1 + 0.5 * math.exp(-0.2)) / 2)
    # 60 words, 59 commas: both fail, mean closeness (e^-0.2 + e^-59) / 2, reward (0 + 0.5 * mean) / 2
    mean = (math.exp(-0.2) + math.exp(-59)) / 2
    assert verifiable.constraint_score(record, words(60, ", ")) == pytest.approx(0.5 * mean / 2)
    # 10 words, 9 commas: (1 + 0.5 * e^-9) / 2; one comma fewer scores higher
    assert verifiable.constraint_score(record, words(10, ", ")) == pytest.approx((1 + 0.5 * math.exp(-9)) / 2)
    assert verifiable.constraint_score(record, words(9, ", ")) > verifiable.constraint_score(record, words(10, ", "))


def test_constraint_score_mixes_graded_and_binary_failures():
    record = {"id": "r", "constraints": [{"kind": "lowercase"}, {"kind": "title"}, {"kind": "no_commas"}]}
    assert verifiable.constraint_score(record, "<<tides>>\nthe moon pulls the sea.") == 1.0
    # 2 capitals among 23 letters: (2 + 0.5 * e^(-2/23)) / 3
    assert verifiable.constraint_score(record, "<<Tides>>\nThe moon pulls the sea.") == pytest.approx(
        (2 + 0.5 * math.exp(-2 / 23)) / 3)
    # all three fail: lowercase e^(-1/13), title 0, one comma e^-1
    mean = (math.exp(-1 / 13) + 0.0 + math.exp(-1)) / 3
    assert verifiable.constraint_score(record, "The moon, the sea.") == pytest.approx(0.5 * mean / 3)


def test_binary_failures_have_no_smooth_term():
    record = {"id": "r", "constraints": [{"kind": "start_with", "phrase": "In short"}, {"kind": "title"}]}
    assert verifiable.constraint_score(record, "Hello there.") == 0.0
    assert verifiable.constraint_score(record, "In short <<t>>") == 1.0


def test_empty_or_blank_response_scores_zero_even_if_vacuously_satisfied():
    record = {"id": "r", "constraints": [{"kind": "no_commas"}, {"kind": "exclude_words", "words": ["very"]}]}
    for score in (verifiable.reward, verifiable.constraint_score):
        assert score(record, "") == 0.0
        assert score(record, " \n\t") == 0.0
    assert verifiable.constraint_score(record, "fine") == 1.0
    assert verifiable.reward(record, "fine") == 0.0  # meets both constraints, but says nothing


def _sample_responses(rng: random.Random) -> list[str]:
    pieces = ["<<A Title>>", "- one", "* two", "1. first", "2) second", "Hello, world.", "hope this helps.",
              "In short", "ALL CAPS", "lower words only", '{"tip": "x", "answer": "y"}', "", "\n\n",
              "very well-known café", "Good luck!", "sunlight energy leaves", "Sentence one. Sentence two?"]
    return ["\n".join(rng.choices(pieces, k=rng.randint(0, 8))) for _ in range(30)] + [words(55), words(12)]


def test_constraint_score_bounds_and_ordering_properties_on_many_records():
    """In [0, 1]; 1 exactly when every constraint holds; more constraints satisfied always wins."""
    rng = random.Random(0)
    responses = _sample_responses(rng)
    for record in verifiable.load("heldout") + verifiable.load("train")[:100]:
        for response in responses:
            r = verifiable.constraint_score(record, response)
            assert 0.0 <= verifiable.reward(record, response) <= r * 0.75 + 0.25
            checks = [verifiable.check(c, response) for c in record["constraints"]]
            satisfied = sum(s == 1.0 for s in checks)
            n = len(checks)
            assert 0.0 <= r <= 1.0
            if response.strip():
                assert (r == 1.0) == (satisfied == n)
                assert satisfied / n <= r < (satisfied + 0.5) / n + 1e-12 or r == 1.0


def test_fully_satisfied_beats_any_failure_with_three_constraints():
    bullets, sentences = {"kind": "bullets", "count": 2}, {"kind": "max_sentences", "count": 3}
    record = {"id": "r", "constraints": [MAX50, bullets, sentences]}
    best = verifiable.constraint_score(record, "- one idea.\n- two ideas.")
    near_misses = ["- one idea.\n- two ideas.\n- three.", words(51), "- a. b. c. d.\n- e."]
    assert best == 1.0
    assert all(verifiable.constraint_score(record, m) < best for m in near_misses)


def test_reward_many_and_length_mismatch():
    recs = [{"id": "a", "constraints": [MAX50]}, {"id": "b", "constraints": [{"kind": "uppercase"}]}]
    texts = ["Tides rise twice daily because the Moon pulls oceans.", "LOUD"]
    assert verifiable.reward_many(recs, texts) == [verifiable.reward(r, t) for r, t in zip(recs, texts)]
    assert verifiable.reward_many(recs, texts)[0] > verifiable.reward_many(recs, texts)[1]
    with pytest.raises(UserError, match="2 records but 1 responses"):
        verifiable.reward_many(recs, ["x"])


def test_answer_full_at_saturates_the_answer_factor_hand_worked():
    rec = {"id": "a", "topic": "tides", "prompt": "Explain tides.",
           "constraints": [MAX50, {"kind": "no_commas"}]}
    text = "Tides rise and fall because the Moon pulls the oceans, and the Sun adds a weaker pull."
    answer = verifiable.answer_score(rec, text)
    constraints = verifiable.constraint_score(rec, text)  # one comma: (1 + 0.5 * exp(-1)) / 2
    assert constraints == pytest.approx((1 + 0.5 * math.exp(-1)) / 2)
    assert 0.4 < answer < 1.0
    base = 0.25 + 0.75 * constraints
    assert verifiable.reward(rec, text) == pytest.approx(base * answer)
    assert verifiable.reward(rec, text, answer_full_at=answer / 2) == pytest.approx(base)  # saturated
    assert verifiable.reward(rec, text, answer_full_at=1.0) == verifiable.reward(rec, text)
    assert verifiable.reward(rec, text, 0.9) == pytest.approx(base * min(1.0, answer / 0.9))
    # saturated, the constraints alone order two answers: the comma-free one wins even with less substance
    plain = "Tides rise and fall because the Moon pulls the oceans."
    assert verifiable.reward(rec, plain, 0.3) > verifiable.reward(rec, text, 0.3)
    assert verifiable.reward(rec, "", 0.3) == 0.0
    for bad in (0.0, -0.1, 1.5, math.nan):
        with pytest.raises(UserError, match="answer_full_at"):
            verifiable.reward(rec, text, bad)


@pytest.mark.parametrize(
    "record, message",
    [
        ({"id": "a", "constraints": []}, "no list of constraints"),
        ({"id": "a"}, "no list of constraints"),
        ({"id": "a", "constraints": [{"kind": "rhymes"}]}, "unknown constraint kind 'rhymes'"),
        ({"id": "a", "constraints": [{"kind": "bullets"}]}, "takes parameters"),
        ({"id": "a", "constraints": [{"kind": "bullets", "count": 2, "extra": 1}]}, "takes parameters"),
        ({"id": "a", "constraints": [{"kind": "word_count"}]}, "min_words, max_words or both"),
        ({"id": "a", "constraints": ["lowercase"]}, "must be an object"),
        ({"id": "a", "constraints": [{"kind": "bullets", "count": "two"}]}, "bad value for 'count'"),
        ({"id": "a", "constraints": [{"kind": "bullets", "count": True}]}, "bad value for 'count'"),
        ({"id": "a", "constraints": [{"kind": "include_words", "words": "sun"}]}, "bad value for 'words'"),
        ({"id": "a", "constraints": [{"kind": "json_keys", "keys": []}]}, "bad value for 'keys'"),
        ({"id": "a", "constraints": [{"kind": "start_with", "phrase": " "}]}, "bad value for 'phrase'"),
        ({"id": "a", "constraints": [{"kind": "word_count", "max_words": -1}]}, "bad value for 'max_words'"),
        ({"id": "a", "constraints": [{"kind": "word_count", "min_words": 9, "max_words": 5}]}, "above max_words"),
    ],
)
def test_bad_records_raise_user_error(record, message):
    with pytest.raises(UserError, match=message):
        verifiable.reward(record, "text")


# --- load and the generated data ----------------------------------------------------------------

def test_load_counts_and_record_shape():
    train, heldout = verifiable.load("train"), verifiable.load("heldout")
    assert len(train) >= 400 and len(heldout) >= 150
    for rec in train + heldout:
        assert set(rec) >= {"id", "prompt", "topic", "constraints"}
        assert 1 <= len(rec["constraints"]) <= 3
        for c in rec["constraints"]:
            verifiable.validate_constraint(c)
    assert len({r["id"] for r in train + heldout}) == len(train) + len(heldout)


def test_load_unknown_split_is_a_user_error():
    with pytest.raises(UserError, match="unknown verifiable split 'test'"):
        verifiable.load("test")


def test_splits_share_no_prompt_text_and_no_topic_constraint_combination():
    train, heldout = verifiable.load("train"), verifiable.load("heldout")
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in heldout}

    def kinds(r):
        return (r["topic"], tuple(sorted(c["kind"] for c in r["constraints"])))

    assert not {kinds(r) for r in train} & {kinds(r) for r in heldout}


def test_data_covers_all_kinds_and_at_least_100_topics():
    for split in verifiable.SPLITS:
        records = verifiable.load(split)
        assert {c["kind"] for r in records for c in r["constraints"]} == set(C.CHECKERS)
    assert len({r["topic"] for r in verifiable.load("train")}) >= 100


LAYOUT = {"bullets", "numbered", "paragraphs", "max_sentences", "json_keys"}


def test_constraints_fit_a_short_answer_and_never_contradict():
    for rec in verifiable.load("train") + verifiable.load("heldout"):
        by_kind = {c["kind"]: c for c in rec["constraints"]}
        assert len(by_kind) == len(rec["constraints"])
        assert len(LAYOUT & set(by_kind)) <= 1
        assert not {"lowercase", "uppercase"} <= set(by_kind)
        if "json_keys" in by_kind:
            assert set(by_kind) <= {"json_keys", "include_words", "exclude_words", "lowercase"}
            assert 1 <= len(by_kind["json_keys"]["keys"]) <= 3
        wc = by_kind.get("word_count", {})
        assert 10 <= wc.get("min_words", 10) <= wc.get("max_words", 60) <= 60
        for kind, low, high in [("bullets", 2, 5), ("numbered", 2, 5), ("paragraphs", 1, 3), ("max_sentences", 2, 5)]:
            if kind in by_kind:
                assert low <= by_kind[kind]["count"] <= high
        banned = set(by_kind.get("exclude_words", {}).get("words", []))
        assert not banned & set(by_kind.get("include_words", {}).get("words", []))
        for kind in ("start_with", "end_with"):
            if kind in by_kind:
                assert not banned & set(C.tokenize(by_kind[kind]["phrase"]))
                assert "no_commas" not in by_kind or "," not in by_kind[kind]["phrase"]


def test_prompt_text_states_the_parameters():
    for rec in verifiable.load("heldout"):
        for c in rec["constraints"]:
            for value in itertools.chain(c.get("words", []), c.get("keys", [])):
                assert f'"{value}"' in rec["prompt"]
            if "phrase" in c:
                assert f'"{c["phrase"]}"' in rec["prompt"]


def _generator():
    path = REPO / "scripts" / "make_verifiable_prompts.py"
    spec = importlib.util.spec_from_file_location("make_verifiable_prompts", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generation_is_reproducible_and_matches_the_committed_files():
    gen = _generator()
    train, heldout = gen.build()
    data = REPO / "src" / "optune" / "tasks" / "verifiable" / "data"
    assert gen.to_jsonl(train) == (data / "train.jsonl").read_text(encoding="utf-8")
    assert gen.to_jsonl(heldout) == (data / "heldout.jsonl").read_text(encoding="utf-8")
    assert gen.build(seed=1) != (train, heldout)  # the seed matters: the comparison can fail


def test_generator_check_mode_reports_a_stale_file(tmp_path, capsys):
    gen = _generator()
    assert gen.main(["--out", str(tmp_path)]) == 0
    assert gen.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "heldout.jsonl").write_text("{}\n", encoding="utf-8")
    assert gen.main(["--out", str(tmp_path), "--check"]) == 1
    assert "DIFFERS" in capsys.readouterr().out
