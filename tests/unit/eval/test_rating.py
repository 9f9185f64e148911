"""The Table 6 prompt and the score-line parser on well-formed and malformed judge replies."""

import pytest

from optune.eval import rating


@pytest.mark.parametrize("reply,expected", [
    ("8 7", (8.0, 7.0)),
    ("8 7\nAssistant 1 was more detailed, 2 was short.", (8.0, 7.0)),
    ("\n\n 9 3 \nbecause 1 2", (9.0, 3.0)),
    ("8.5 6", (8.5, 6.0)),
    ("8, 7", (8.0, 7.0)),
    ("Score: 8/10 and 7/10", (8.0, 7.0)),
    ("Assistant 1: 8, Assistant 2: 7.5", (8.0, 7.5)),
    ("Assistant 1: 8\nAssistant 2: 7\nexplanation", (8.0, 7.0)),
    ("**Assistant 1**: 8/10\n**Assistant 2**: 6/10", (8.0, 6.0)),
    ("10 1", (10.0, 1.0)),
])
def test_parse_scores_accepts(reply, expected):
    assert rating.parse_scores(reply) == expected


@pytest.mark.parametrize("reply", [
    "8", "8 7 6", "", None, "   \n  ", "11 3", "8 -", "Both answers are good.", "8\n7",
    "The first answer scores 8 out of 10, the second 7 out of 10",  # four numbers: ambiguous
])
def test_parse_scores_refuses(reply):
    assert rating.parse_scores(reply) is None


def test_messages_follow_table6():
    msgs = rating.messages("Why is the sky blue?", "Rayleigh scattering.", "Because.")
    assert msgs[0] == {"role": "system", "content": rating.SYSTEM_PROMPT}
    user = msgs[1]["content"]
    assert user.startswith("[Question]\nWhy is the sky blue?\n\n[The Start of Assistant 1's Answer]\n"
                           "Rayleigh scattering.\n\n[The End of Assistant 1's Answer]")
    assert "[The Start of Assistant 2's Answer]\nBecause.\n\n[The End of Assistant 2's Answer]" in user
    assert "single line containing only two values" in user


def test_score_regex_matches_valid_lines_only():
    import re
    pattern = re.compile(rating.SCORE_LINE_REGEX)
    assert pattern.fullmatch("8 7") and pattern.fullmatch("10 1\nfine")
    assert not pattern.fullmatch("0 7") and not pattern.fullmatch("8  7")
