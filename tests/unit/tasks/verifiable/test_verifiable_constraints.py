"""Every constraint checker on tricky inputs, with expectations worked out by hand."""

import math

import pytest

from optune.tasks.verifiable import constraints as C

# --- words -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("", []),
        ("   \n\t ", []),
        ("Hello, world!", ["hello", "world"]),
        ("A well-known fact.", ["a", "well-known", "fact"]),  # hyphenated: one word
        ("Don’t stop; it's fine", ["don't", "stop", "it's", "fine"]),  # curly and straight apostrophes
        ("café—bar", ["café", "bar"]),  # em dash separates, accent kept
        ("cafe\u0301", ["café"]),  # combining accent composed by NFKC
        ("yes - no", ["yes", "no"]),  # a spaced hyphen is punctuation, not a word
        ("It costs 3.5 or 10,000 dollars.", ["it", "costs", "3.5", "or", "10,000", "dollars"]),
        ("one,two", ["one", "two"]),  # a comma between letters separates
        ("snake_case", ["snake", "case"]),
        ("1. Milk\n2) Eggs", ["milk", "eggs"]),  # list markers are not words
        ("«Bonjour» “hi”", ["bonjour", "hi"]),
    ],
)
def test_tokenize(text, expected):
    assert C.tokenize(text) == expected


def test_word_count_inside_range_is_one():
    assert C.word_count("one two three", min_words=3, max_words=3) == 1.0
    assert C.word_count("  one two three \n", max_words=3) == 1.0
    assert C.word_count("one two three", min_words=2) == 1.0


def test_word_count_closeness_is_relative_to_the_violated_bound():
    sixty, two_hundred = "w " * 60, "w " * 200
    assert C.word_count(sixty, max_words=50) == pytest.approx(math.exp(-10 / 50))
    assert C.word_count(two_hundred, max_words=50) == pytest.approx(math.exp(-150 / 50))
    assert C.word_count("a b c d e", min_words=10) == pytest.approx(math.exp(-5 / 10))
    assert C.word_count("", min_words=10) == pytest.approx(math.exp(-1))
    assert C.word_count("a well-known café", max_words=2) == pytest.approx(math.exp(-1 / 2))


# --- lists, paragraphs, sentences -------------------------------------------------------------

BULLETS = "Intro line\n- first\n* second\n  • third (indented)\n-not a bullet\n**bold** not a bullet\n---\n- \n"


def test_count_bullets_accepts_dash_star_and_bullet_only_with_a_space():
    assert C.count_bullets(BULLETS) == 3
    assert C.bullets(BULLETS, count=3) == 1.0
    assert C.bullets(BULLETS, count=4) == pytest.approx(math.exp(-1 / 4))
    assert C.bullets("", count=2) == pytest.approx(math.exp(-2 / 2))


def test_count_numbered_accepts_dot_and_parenthesis():
    text = "Steps:\n1. Mix\n2) Bake\n  3. Cool\n4.Wrong (no space)\n2024 was a year.\n10. Serve"
    assert C.count_numbered(text) == 4
    assert C.numbered(text, count=4) == 1.0
    assert C.numbered(text, count=2) == pytest.approx(math.exp(-2 / 2))
    assert C.count_numbered("- a\n- b") == 0


def test_count_paragraphs_ignores_whitespace_only_lines_and_edges():
    assert C.count_paragraphs("") == 0
    assert C.count_paragraphs("\n\n  One line.\n") == 1
    assert C.count_paragraphs("First para\nstill first.\n \t\nSecond.\n\n\n\nThird.\n\n") == 3
    assert C.count_paragraphs("A\r\n\r\nB") == 2
    assert C.paragraphs("A\n\nB", count=2) == 1.0
    assert C.paragraphs("A\n\nB\n\nC\n\nD", count=2) == pytest.approx(math.exp(-2 / 2))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", 0),
        ("One. Two! Three? Four", 4),  # an unfinished last sentence (truncated, no EOS) counts
        ("Wait... what?! Yes.", 3),
        ("He said “stop.” Then he left.", 2),  # terminal punctuation inside closing quotes
        ("Use tools, e.g. a hammer. Dr. Lee agrees.", 2),  # abbreviations do not end sentences
        ("We need milk, eggs, etc. Then we bake.", 2),  # "etc." does end one
        ("It is the first. Really.", 2),  # "first." is not the abbreviation "st."
        ("Pi is 3.14 roughly.", 1),
        ("<<My Title>>\nOne sentence here.", 1),  # a title line is not a sentence
        ("- point one\n- point two", 2),  # line breaks end sentences
        ("Done…  Next one.", 2),  # unicode ellipsis
        ("...", 0),
    ],
)
def test_count_sentences(text, expected):
    assert C.count_sentences(text) == expected


def test_max_sentences():
    assert C.max_sentences("One. Two.", count=2) == 1.0
    assert C.max_sentences("One. Two. Three. Four.", count=2) == pytest.approx(math.exp(-2 / 2))
    assert C.max_sentences("", count=2) == pytest.approx(math.exp(-1))  # zero sentences: below 1


# --- words included / excluded ------------------------------------------------------------------

def test_include_words_whole_words_case_insensitive():
    text = "The Sunlight feeds a well-known café."
    assert C.include_words(text, words=["sunlight"]) == 1.0
    assert C.include_words(text, words=["SUNLIGHT", "cafe\u0301"]) == 1.0  # case and accent forms
    assert C.include_words(text, words=["sun"]) == pytest.approx(math.exp(-1))  # part of a word
    assert C.include_words(text, words=["known"]) == pytest.approx(math.exp(-1))  # inside "well-known"
    assert C.include_words(text, words=["well-known"]) == 1.0
    # all must be present; graded by the share missing: 1 of 2 -> exp(-1/2)
    assert C.include_words(text, words=["sunlight", "moon"]) == pytest.approx(math.exp(-1 / 2))
    assert C.include_words(text, words=["moon", "stars"]) == pytest.approx(math.exp(-1))
    assert C.include_words("", words=["a"]) == pytest.approx(math.exp(-1))


def test_exclude_words():
    assert C.exclude_words("It is Very good.", words=["very"]) == pytest.approx(math.exp(-1))
    assert C.exclude_words("Everything is fine.", words=["very"]) == 1.0  # substring is not the word
    assert C.exclude_words("just-in-time delivery", words=["just"]) == 1.0
    assert C.exclude_words("Just do it.", words=["really", "just"]) == pytest.approx(math.exp(-1))
    # graded by occurrences: three banned words -> exp(-3)
    assert C.exclude_words("very, VERY, really", words=["really", "very"]) == pytest.approx(math.exp(-3))
    assert C.exclude_words("", words=["very"]) == 1.0


# --- case ----------------------------------------------------------------------------------------

def test_lowercase():
    assert C.lowercase("all lower, with digits 123 and café!") == 1.0
    # graded by the share of capitals among cased letters: 1 of 10 -> exp(-0.1)
    assert C.lowercase("one Capital") == pytest.approx(math.exp(-1 / 10))
    assert C.lowercase("accented É capital") == pytest.approx(math.exp(-1 / 16))
    assert C.lowercase("ALL CAPS") == pytest.approx(math.exp(-1))
    assert C.lowercase("") == 0.0  # no letters: nothing was written in lowercase
    assert C.lowercase("123 !!") == 0.0
    assert C.lowercase("  <<a title>>\n- point ") == 1.0


def test_uppercase():
    assert C.uppercase("ALL CAPS, CAFÉ 42!") == 1.0
    assert C.uppercase("ALL CAPS but one") == pytest.approx(math.exp(-6 / 13))
    assert C.uppercase("ÉTÉ é") == pytest.approx(math.exp(-1 / 4))
    assert C.uppercase("") == 0.0


# --- start / end phrases -------------------------------------------------------------------------

def test_start_with():
    assert C.start_with("  \n In short, it works.", phrase="In short") == 1.0
    assert C.start_with("IN SHORT it works", phrase="In short") == 1.0
    assert C.start_with("In   short it works", phrase="In short") == 1.0  # whitespace runs collapse
    assert C.start_with("In shorthand...", phrase="In short") == 0.0  # must end at a word boundary
    assert C.start_with("Well, in short...", phrase="In short") == 0.0
    assert C.start_with("“Here is” the plan", phrase='"Here is"') == 1.0  # curly quotes straightened
    assert C.start_with("", phrase="Here is") == 0.0


def test_end_with():
    assert C.end_with("It works. Hope this helps.  \n", phrase="Hope this helps.") == 1.0
    assert C.end_with("it works. HOPE THIS HELPS.", phrase="Hope this helps.") == 1.0
    assert C.end_with("Hope this helps", phrase="Hope this helps.") == 0.0  # truncated: no final dot
    assert C.end_with("Hope this helps. Bye", phrase="Hope this helps.") == 0.0
    assert C.end_with("Go. Enjoy!", phrase="Enjoy!") == 1.0
    assert C.end_with("Go. Overenjoy!", phrase="Enjoy!") == 0.0  # not a whole-word ending
    assert C.end_with("", phrase="Enjoy!") == 0.0


# --- JSON ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, keys, expected",
    [
        ('{"tip": "drink water", "reason": "health"}', ["tip", "reason"], 1.0),
        ('  {"tip": "x"}  \n', ["tip"], 1.0),
        ('```json\n{"tip": "x", "extra": 1}\n```', ["tip"], 1.0),  # fenced, extra keys allowed
        ('```\n{"tip": "x"}\n```', ["tip"], 1.0),
        ('```JSON\n{"tip": "x"}```', ["tip"], 1.0),
        ('{"tip": "café — “quoted”"}', ["tip"], 1.0),
        ('{"tip": "x"}', ["tip", "reason"], 0.0),  # a key is missing
        ('{"Tip": "x"}', ["tip"], 0.0),  # keys are exact
        ('{"outer": {"tip": "x"}}', ["tip"], 0.0),  # top-level keys only
        ('["tip"]', ["tip"], 0.0),  # not an object
        ('Here it is: {"tip": "x"}', ["tip"], 0.0),  # text around the JSON
        ('```json\n{"tip": "x"}\n```\nHope this helps.', ["tip"], 0.0),
        ('{"tip": "unfinished', ["tip"], 0.0),  # truncated
        ("{'tip': 'x'}", ["tip"], 0.0),  # Python dict, not JSON
        ('{“tip”: “x”}', ["tip"], 0.0),  # curly quotes are not JSON syntax
        ("", ["tip"], 0.0),
    ],
)
def test_json_keys(text, keys, expected):
    assert C.json_keys(text, keys=keys) == expected


# --- commas and titles ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("No commas here. None at all!", 1.0),
        ("", 1.0),
        ("one, two", math.exp(-1)),  # graded by count: each comma multiplies by 1/e
        ("a, b, c", math.exp(-2)),
        ("fullwidth\uff0ccomma", math.exp(-1)),
        ("ideographic\u3001comma", math.exp(-1)),
        ("arabic\u060ccomma", math.exp(-1)),
        ("semicolons; dashes — and dots... are fine", 1.0),
    ],
)
def test_no_commas(text, expected):
    assert C.no_commas(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<<Why Tides Happen>>\nThe moon pulls.", 1.0),
        ("Intro text <<a title in the middle>> more", 1.0),
        ("<<café — “quotes”>>", 1.0),
        ("<<>>", 0.0),
        ("<<   >>", 0.0),
        ("<<broken\ntitle>>", 0.0),
        ("<single brackets>", 0.0),
        ("« guillemets »", 0.0),
        ("<<unclosed title", 0.0),  # truncated before the closing brackets
        ("", 0.0),
    ],
)
def test_title(text, expected):
    assert C.title(text) == expected


def test_every_kind_is_either_graded_or_binary():
    assert len(C.CHECKERS) >= 14
    assert sorted(C.GRADED_KINDS + C.BINARY_KINDS) == sorted(C.CHECKERS)
