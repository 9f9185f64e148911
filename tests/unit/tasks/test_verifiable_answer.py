"""The verifiable reward's answer factor: real answers beat non-answers, copies and padding (issue 23).

Every response here is written by hand; no model is loaded. Numbers marked "by hand" are worked out
in the comments from the formula in `optune.tasks.verifiable.answer`.
"""

import random

import pytest

from optune.tasks import verifiable
from optune.tasks.verifiable import answer as A

MAX20 = {"kind": "word_count", "max_words": 20}
GPS20 = {
    "id": "gps20", "topic": "GPS navigation", "request": "Give a simple overview of GPS navigation.",
    "prompt": "Give a simple overview of GPS navigation. Use no more than 20 words.", "constraints": [MAX20],
}
GPS = {
    "id": "gps", "topic": "GPS navigation", "request": "Give a simple overview of GPS navigation.",
    "prompt": "Give a simple overview of GPS navigation. Avoid commas entirely. Answer in no more than five "
              "sentences.",
    "constraints": [{"kind": "no_commas"}, {"kind": "max_sentences", "count": 5}],
}
GPS_ANSWER = ("GPS navigation works with satellites that circle the Earth and broadcast precise timing signals. "
              "A receiver in your phone measures how long each signal takes to arrive. From four or more "
              "satellites it calculates its latitude and longitude. A map app then shows your position and "
              "plans a route.")
PRESS = {
    "id": "press", "topic": "the printing press",
    "request": "Write a short explanation of the printing press for a curious teenager.",
    "prompt": "Write a short explanation of the printing press for a curious teenager. Answer in no more than "
              "three sentences.",
    "constraints": [{"kind": "max_sentences", "count": 3}],
}
TITLED = {**GPS, "id": "gps-title", "constraints": [{"kind": "title"}, {"kind": "no_commas"}]}
PRESS_TITLED = {**PRESS, "id": "press-title", "constraints": [{"kind": "title"}]}
PRESS_ANSWER = ("Around 1440 Johannes Gutenberg built a printing press with movable metal type. Workers arranged "
                "letters, inked them and pressed paper on top, so a shop could copy hundreds of pages a day. "
                "Books became cheap, literacy spread and new ideas travelled across Europe.")


# --- hand-worked numbers ------------------------------------------------------------------------

def test_hand_worked_full_answer_under_a_word_limit():
    # 16 words: gps satellites send timing signals your phone measures their delays and computes its
    # position for navigation. New content stems (not function words, not in the prompt): satellit,
    # send, tim, signal, phone, measur, delay, comput, position = 9. T = round(0.3 * 20) = 6.
    # substance = min(1, 9 / max(6, 0.2 * 16)) = 1; nothing repeated or copied; topic: gps and
    # navigation both named. answer = 1, constraints = 1 (16 <= 20 words), reward = 1.
    text = ("GPS satellites send timing signals. Your phone measures their delays and computes its position "
            "for navigation.")
    assert A.answer_parts(GPS20, text) == A.AnswerParts(words=16, new=9, target=6, wasted=0, topic=1.0)
    assert verifiable.reward(GPS20, text) == 1.0


def test_hand_worked_thin_answer():
    # "GPS uses satellites.": W = 3; "gps" is in the prompt, "uses" is vague, so N = 1 (satellit).
    # substance = 1 / max(6, 0.6) = 1/6; topic: gps named, navigation not -> 0.5 + 0.5 * 0.5 = 0.75.
    # answer = 1/6 * 0.75 = 0.125; constraints = 1; reward = (0.25 + 0.75) * 0.125.
    assert A.answer_parts(GPS20, "GPS uses satellites.") == A.AnswerParts(3, 1, 6, 0, 0.5)
    assert verifiable.reward(GPS20, "GPS uses satellites.") == pytest.approx(0.125)


def test_hand_worked_repetition():
    # One 5-word sentence said twice: W = 10, N = 4 (satellit, send, tim, signal). The 4-grams at
    # positions 5 and 6 were seen at 0 and 1, so words 5..9 are wasted: fresh = 1 - 5/10 = 0.5.
    # substance = 4 / max(6, 2) = 2/3; topic 0.75 (no navigation). answer = 2/3 * 0.5 * 0.75 = 0.25.
    text = "GPS satellites send timing signals. GPS satellites send timing signals."
    assert A.answer_parts(GPS20, text) == A.AnswerParts(10, 4, 6, 5, 0.5)
    assert verifiable.reward(GPS20, text) == pytest.approx(0.25)


def test_hand_worked_constraint_failure_keeps_a_quarter():
    # A full answer with one comma breaks "no commas" (closeness e^-1) and meets "at most 5
    # sentences": constraints = (1 + 0.5 * e^-1) / 2; answer = 1; reward = 0.25 + 0.75 * constraints.
    text = GPS_ANSWER.replace("Earth and", "Earth, and")
    c = verifiable.constraint_score(GPS, text)
    assert c == pytest.approx((1 + 0.5 * 0.36787944117144233) / 2)
    assert verifiable.answer_score(GPS, text) == 1.0
    assert verifiable.reward(GPS, text) == pytest.approx(0.25 + 0.75 * c)


# --- answers against non-answers -----------------------------------------------------------------

@pytest.mark.parametrize(
    "record, answer, non_answer",
    [
        (GPS, GPS_ANSWER, "Sure."),
        (GPS, GPS_ANSWER, 'Here\'s a hint: "A: GPS navigation."'),  # a real trained output
        (TITLED, "<<How GPS finds you>>\n" + GPS_ANSWER, "<<GPS navigation>>"),  # a title only
        (TITLED, "<<How GPS finds you>>\n" + GPS_ANSWER, "<<Satellites orbit Earth sending timing signals>>"),
        (GPS, GPS_ANSWER, "GPS navigation is a great and important topic that many people find interesting."),
        (PRESS_TITLED, "<<Gutenberg>> " + PRESS_ANSWER, '<<"printing press"-smell it!>>'),  # a real trained output
        (PRESS, PRESS_ANSWER,
         "I hope this helps you understand the printing press. Let me know if you have questions!"),
    ],
)
def test_an_answer_beats_a_non_answer_that_meets_the_same_constraints(record, answer, non_answer):
    assert verifiable.constraint_score(record, non_answer) == 1.0  # the old reward could not tell them apart
    assert verifiable.constraint_score(record, answer) == 1.0
    assert verifiable.reward(record, answer) == 1.0
    assert verifiable.reward(record, non_answer) < 0.2


@pytest.mark.parametrize("copy", [GPS["request"], GPS["prompt"], GPS["request"] + " " + GPS["request"]])
def test_copying_the_request_back_scores_zero(copy):
    assert verifiable.reward(GPS, copy) == 0.0


def test_restating_the_request_before_answering_costs_little():
    restated = GPS["request"] + " " + GPS_ANSWER
    assert verifiable.reward(GPS, restated) < verifiable.reward(GPS, GPS_ANSWER)
    assert verifiable.reward(GPS, restated) > 0.7  # only the 7 copied words are discounted


def test_an_off_topic_answer_loses_to_the_on_topic_one():
    off_topic = ("Rice needs a heavy pot and twice its volume of water. Bring it to a boil then lower the heat. "
                 "Cover the pot and wait eighteen minutes before you lift the lid.")
    assert verifiable.answer_parts(GPS, off_topic).topic == 0.0
    assert verifiable.reward(GPS, off_topic) == pytest.approx(0.5)
    assert verifiable.reward(GPS, GPS_ANSWER) == 1.0


# --- padding ---------------------------------------------------------------------------------------

MIN50 = {"id": "storm", "topic": "ocean tides", "request": "Explain ocean tides to a beginner.",
         "prompt": "Explain ocean tides to a beginner. Use at least 50 words.",
         "constraints": [{"kind": "word_count", "min_words": 50}]}
TIDES = ("Tides are the daily rise and fall of the sea. The Moon's gravity pulls the ocean toward it and "
         "makes a bulge of water on the side facing the Moon and another on the far side.")


def test_repetition_padding_never_wins_even_when_it_meets_a_word_minimum():
    padded = " ".join(["Remember the storm that shaped the ocean."] * 10)  # once scored 1.0
    assert verifiable.constraint_score(MIN50, padded) == 1.0
    assert verifiable.reward(MIN50, padded) < 0.05
    # The honest 37-word answer misses the minimum, and still wins by far.
    assert verifiable.constraint_score(MIN50, TIDES) < 1.0
    assert verifiable.reward(MIN50, TIDES) > 10 * verifiable.reward(MIN50, padded)


def test_short_complete_answer_beats_itself_padded_with_its_own_sentences():
    first = TIDES.split(". ")[0] + "."
    padded = TIDES + " " + " ".join([first] * 3)  # now 62 words: meets "at least 50"
    assert verifiable.constraint_score(MIN50, padded) == 1.0
    honest = TIDES + (" Twice a day each coast passes through a bulge, so the water climbs the beach and then "
                      "drains away.")
    assert verifiable.constraint_score(MIN50, honest) == 1.0
    assert verifiable.reward(MIN50, honest) > verifiable.reward(MIN50, padded)
    assert verifiable.answer_parts(MIN50, padded).wasted >= 3 * len(first.split())


def test_inflecting_one_word_adds_no_substance():
    assert A.answer_parts(GPS, "Signal signals signalling signalled.").new == 1
    assert A.answer_parts(GPS, "Compute computes computing computed.").new == 1


# --- constraints still matter ---------------------------------------------------------------------

def test_meeting_the_constraints_beats_the_same_answer_breaking_them():
    lower = {**GPS, "constraints": [{"kind": "lowercase"}]}
    assert verifiable.answer_score(lower, GPS_ANSWER) == verifiable.answer_score(lower, GPS_ANSWER.lower())
    assert verifiable.reward(lower, GPS_ANSWER.lower()) == 1.0
    assert verifiable.reward(lower, GPS_ANSWER) < 0.7
    with_commas = GPS_ANSWER.replace(" and ", ", and ")
    assert verifiable.reward(GPS, with_commas) < verifiable.reward(GPS, GPS_ANSWER)


def test_required_phrases_and_titles_are_not_substance_and_not_penalised():
    start = {**GPS, "constraints": [{"kind": "start_with", "phrase": "Think of it this way"}]}
    text = "Think of it this way " + GPS_ANSWER
    assert A.body_words(start["constraints"], text) == A.body_words([], GPS_ANSWER)
    assert verifiable.reward(start, text) == 1.0
    assert verifiable.reward(start, "Think of it this way") == 0.0


# --- range, determinism, shape ---------------------------------------------------------------------

def test_reward_is_a_deterministic_product_in_the_unit_interval():
    rng = random.Random(1)
    pool = [GPS_ANSWER, PRESS_ANSWER, TIDES, "Sure.", "", "   ", "<<t>>", '{"answer": "tides follow the moon"}',
            "- one\n- two", "WORD " * 80, "ça va, très bien!", "1. 1. 1. 1."]
    responses = pool + ["\n".join(rng.choices(pool, k=rng.randint(1, 4))) for _ in range(20)]
    for record in verifiable.load("heldout")[:60] + [GPS, PRESS, MIN50]:
        for response in responses:
            r = verifiable.reward(record, response)
            assert 0.0 <= r <= 1.0
            assert r == verifiable.reward(dict(record), str(response))
            if response.strip():
                c, a = verifiable.constraint_score(record, response), verifiable.answer_score(record, response)
                assert r == pytest.approx((0.25 + 0.75 * c) * a)


def test_records_without_prompt_or_topic_still_score():
    assert verifiable.reward({"id": "r", "constraints": [MAX20]}, "GPS satellites send timing signals.") > 0


@pytest.mark.parametrize("field", ["prompt", "topic"])
def test_a_prompt_or_topic_that_is_not_text_is_a_user_error(field):
    with pytest.raises(verifiable.UserError, match=f"'{field}' is not text"):
        verifiable.reward({**GPS, field: 3}, "text")
