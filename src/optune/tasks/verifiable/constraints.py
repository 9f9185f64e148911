"""Checkers for verifiable constraints: each one is a pure function `(response, **params) -> float`.

A checker returns 1.0 when the response satisfies the constraint. On failure, the graded kinds
(everything that counts something: words, bullets, numbered items, paragraphs, sentences, included
or excluded words, commas, letters in the wrong case) return a closeness in (0, 1),
`exp(-relative distance)`, so "60 words for at most 50" scores higher than "200 words" and "one
comma" higher than "five". The four all-or-nothing kinds (start phrase, end phrase, title, JSON)
return 0.0. The closeness lets `reward` separate two failing responses: on 128 pairs sampled from
the starting policy, the tie rate is 0.34. Grading only length and layout gave 0.56 on the same pairs.

Text conventions, chosen once so every checker agrees:
- Text is NFKC-normalised first ("café" typed with a combining accent equals the composed form,
  fullwidth letters become ASCII); comparisons of words and phrases are case-insensitive (casefold).
- A word is a run of letters or digits; hyphens and apostrophes *inside* a word join it
  ("well-known", "don't", "rock’n’roll" are one word each); a dot or comma between digits joins a
  number ("3.5", "10,000"). Dashes with spaces or em dashes ("yes—no") separate words.
- Lines are split on any line break; a "blank" line holds only whitespace.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Callable

_JOINER = r"(?:[-\u2010\u2011'\u2019]|(?<=\d)[.,](?=\d))"
WORD_RE = re.compile(rf"[^\W_]+(?:{_JOINER}[^\W_]+)*")
BULLET_RE = re.compile(r"^[-*\u2022\u2023\u25e6\u25aa\u25cf\u2043]\s+\S")
NUMBERED_RE = re.compile(r"^\d{1,3}[.)]\s+\S")
TITLE_RE = re.compile(r"<<([^<>\n]*\S[^<>\n]*)>>")
TITLE_LINE_RE = re.compile(r"^\s*<<[^<>\n]*>>\s*$")
# A sentence ends at terminal punctuation (possibly repeated, possibly followed by closing quotes or
# brackets) that is followed by whitespace or the end of the text.
SENTENCE_END_RE = re.compile(r"[.!?\u2026\u3002]+[\"'\u201d\u2019)\]]*(?=\s|$)")
# Tokens whose final dot does not end a sentence ("etc." usually does, so it is not here).
ABBREVIATIONS = frozenset({"e.g.", "i.e.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "approx."})
LIST_MARKER_RE = re.compile(r"^\s*\d{1,3}[.)]\s+", re.MULTILINE)
FENCE_RE = re.compile(r"^```[A-Za-z0-9_-]*[ \t]*\n(.*?)\n?```$", re.DOTALL)
COMMAS = ",\uff0c\u3001\ufe50\ufe51\u060c\u201a"
QUOTE_MAP = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})


def normalize(text: str) -> str:
    """NFKC form with curly quotes made straight: the form every comparison uses."""
    return unicodedata.normalize("NFKC", text).translate(QUOTE_MAP)


def tokenize(text: str) -> list[str]:
    """The words of `text`, casefolded (see the module docstring for what a word is).

    The "1." or "2)" that opens a numbered item is a list marker, not a word.
    """
    text = LIST_MARKER_RE.sub("", normalize(text))
    return [w.casefold() for w in WORD_RE.findall(text)]


def closeness(value: int, low: float, high: float) -> float:
    """1.0 inside [low, high]; outside, exp(-distance / violated bound), which lies in (0, 1).

    Relative distance makes "2 over a limit of 3" count as far as "20 over a limit of 30". A bound
    of 0 ("no commas") counts as 1: each extra occurrence multiplies the closeness by 1/e.
    """
    if low <= value <= high:
        return 1.0
    bound, distance = (low, low - value) if value < low else (high, value - high)
    return math.exp(-distance / max(bound, 1))


def _lines(text: str) -> list[str]:
    return normalize(text).splitlines()


def word_count(response: str, min_words: int = 0, max_words: int | None = None) -> float:
    """Number of words within [min_words, max_words] (either bound may be left open)."""
    high = math.inf if max_words is None else max_words
    return closeness(len(tokenize(response)), min_words, high)


def count_bullets(response: str) -> int:
    """Lines starting with `-`, `*` or a bullet character followed by a space (`**bold**` is not one)."""
    return sum(1 for line in _lines(response) if BULLET_RE.match(line.strip()))


def bullets(response: str, count: int) -> float:
    """Exactly `count` bullet points."""
    return closeness(count_bullets(response), count, count)


def count_numbered(response: str) -> int:
    """Lines starting with `1.` or `1)` style numbers followed by a space."""
    return sum(1 for line in _lines(response) if NUMBERED_RE.match(line.strip()))


def numbered(response: str, count: int) -> float:
    """Exactly `count` numbered items."""
    return closeness(count_numbered(response), count, count)


def count_paragraphs(response: str) -> int:
    """Blocks of non-blank lines separated by at least one blank line."""
    blocks, in_block = 0, False
    for line in _lines(response):
        if line.strip() and not in_block:
            blocks += 1
        in_block = bool(line.strip())
    return blocks


def paragraphs(response: str, count: int) -> float:
    """Exactly `count` paragraphs."""
    return closeness(count_paragraphs(response), count, count)


def count_sentences(response: str) -> int:
    """Sentences: text pieces holding a word, split at terminal punctuation and at line breaks.

    Lines that hold only a <<title>> are not sentences. Common abbreviations ("e.g.", "Dr.") do not
    end a sentence. An unfinished last sentence (a truncated response) still counts as one.
    """
    total = 0
    for line in _lines(response):
        if TITLE_LINE_RE.match(line):
            continue
        start = 0
        for match in SENTENCE_END_RE.finditer(line):
            if _is_abbreviation(line[: match.end()]):
                continue
            total += bool(WORD_RE.search(line[start : match.end()]))
            start = match.end()
        total += bool(WORD_RE.search(line[start:]))
    return total


def _is_abbreviation(text: str) -> bool:
    """Whether the last token of `text` (which ends in a dot) is a known abbreviation."""
    last = text.split()[-1].strip("\"'()[]").casefold()
    return last in ABBREVIATIONS


def max_sentences(response: str, count: int) -> float:
    """At most `count` sentences (at least one)."""
    return closeness(count_sentences(response), 1, count)


def include_words(response: str, words: list[str]) -> float:
    """Every listed word occurs as a whole word, ignoring case ("known" is not in "well-known").

    Graded by the fraction found: exp(-missing / listed).
    """
    present = set(tokenize(response))
    wanted = {_as_word(w) for w in words}
    return closeness(len(wanted & present), len(wanted), len(wanted))


def exclude_words(response: str, words: list[str]) -> float:
    """None of the listed words occurs as a whole word, ignoring case; graded by occurrences."""
    banned = {_as_word(w) for w in words}
    return closeness(sum(t in banned for t in tokenize(response)), 0, 0)


def _as_word(word: str) -> str:
    return normalize(word).casefold()


def _cased_letters(response: str) -> list[str]:
    return [c for c in normalize(response) if c.isupper() or c.islower()]


def _case_score(response: str, wrong_case) -> float:
    """1.0 if there are letters and none is in the wrong case, else exp(-wrong / letters).

    No letters at all scores 0.0: nothing was written in the asked-for case.
    """
    letters = _cased_letters(response)
    if not letters:
        return 0.0
    wrong = sum(1 for c in letters if wrong_case(c))
    return 1.0 if wrong == 0 else math.exp(-wrong / len(letters))


def lowercase(response: str) -> float:
    """No capital letter anywhere (accented capitals included); graded by the share of capitals."""
    return _case_score(response, str.isupper)


def uppercase(response: str) -> float:
    """No lowercase letter anywhere; graded by the share of lowercase letters."""
    return _case_score(response, str.islower)


def _phrase_form(text: str) -> str:
    """Casefolded, straight quotes, runs of whitespace collapsed to one space, ends trimmed."""
    return " ".join(normalize(text).casefold().split())


def start_with(response: str, phrase: str) -> float:
    """The response, ignoring leading whitespace and case, begins with `phrase` as whole words."""
    text, want = _phrase_form(response), _phrase_form(phrase)
    return float(text.startswith(want) and not text[len(want) : len(want) + 1].isalnum())


def end_with(response: str, phrase: str) -> float:
    """The response, ignoring trailing whitespace and case, ends with `phrase` exactly."""
    text, want = _phrase_form(response), _phrase_form(phrase)
    return float(text.endswith(want) and not text[: len(text) - len(want)][-1:].isalnum())


def parse_json_answer(response: str) -> object | None:
    """The JSON value the whole response holds, bare or as one ``` fence (e.g. ```json); else None.

    The text is not normalised: straightening curly quotes inside strings would break valid JSON.
    """
    text = response.strip()
    fenced = FENCE_RE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except ValueError:
        return None


def json_keys(response: str, keys: list[str]) -> float:
    """The response is only a JSON object (optionally fenced) holding every listed top-level key."""
    value = parse_json_answer(response)
    return float(isinstance(value, dict) and all(k in value for k in keys))


def no_commas(response: str) -> float:
    """No comma of any script (ASCII, fullwidth, ideographic, Arabic, low-9 quote); graded by count."""
    return closeness(sum(1 for c in response if c in COMMAS), 0, 0)


def title(response: str) -> float:
    """A title wrapped in double angle brackets, <<like this>>, on one line and not empty."""
    return float(bool(TITLE_RE.search(normalize(response))))


# kind -> (checker, parameter names): a constraint record is {"kind": kind, **params}.
CHECKERS: dict[str, tuple[Callable[..., float], tuple[str, ...]]] = {
    "word_count": (word_count, ("min_words", "max_words")),
    "bullets": (bullets, ("count",)),
    "numbered": (numbered, ("count",)),
    "paragraphs": (paragraphs, ("count",)),
    "max_sentences": (max_sentences, ("count",)),
    "include_words": (include_words, ("words",)),
    "exclude_words": (exclude_words, ("words",)),
    "lowercase": (lowercase, ()),
    "uppercase": (uppercase, ()),
    "start_with": (start_with, ("phrase",)),
    "end_with": (end_with, ("phrase",)),
    "json_keys": (json_keys, ("keys",)),
    "no_commas": (no_commas, ()),
    "title": (title, ()),
}
BINARY_KINDS = ("start_with", "end_with", "json_keys", "title")  # 0.0 on any failure
GRADED_KINDS = tuple(k for k in CHECKERS if k not in BINARY_KINDS)
