"""The paper's judge rating prompt (Table 6) and a parser for the "score1 score2" line it asks for.

The parser is deliberately forgiving about decoration ("Score: 8/10 and 7/10", "8, 7",
"Assistant 1: 8 Assistant 2: 7") but refuses anything ambiguous ("8", "8 7 6", out-of-range
numbers): a wrong parse silently flips a win, while a refused one is counted and reported.
"""

from __future__ import annotations

import re

# Bump when the prompt text changes, so cached judgments of the old prompt are not reused.
PROMPT_VERSION = "table6-v1"

SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answers."

USER_TEMPLATE = (
    "[Question]\n{question}\n\n"
    "[The Start of Assistant 1's Answer]\n{answer_1}\n\n[The End of Assistant 1's Answer]\n\n"
    "[The Start of Assistant 2's Answer]\n{answer_2}\n\n[The End of Assistant 2's Answer]\n\n"
    "We would like to request your feedback on the performance of two AI assistants in response to the "
    "user question displayed above.\n"
    "Please rate the helpfulness, relevance, accuracy, and level of details of their responses. Each "
    "assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better "
    "overall performance.\n"
    "Please first output a single line containing only two values indicating the scores for Assistant 1 "
    "and 2, respectively. The two scores are separated by a space. In the subsequent line, please "
    "provide a comprehensive explanation of your evaluation, avoiding any potential bias and ensuring "
    "that the order in which the responses were presented does not affect your judgment."
)

# What constrained decoding forces: the score line, then optionally one line of explanation.
SCORE_LINE_REGEX = r"(10|[1-9]) (10|[1-9])(\n[^\n]{0,400})?"

_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(?!\w)")
_OUT_OF_TEN = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*10(?!\d)")
_LABELLED = [re.compile(rf"\W*assistant\s*{i}\b", re.IGNORECASE) for i in (1, 2)]
_LABEL = re.compile(r"\b(?:assistant|answer|response)\s*[12]\b\s*(?:'s)?", re.IGNORECASE)


def messages(question: str, answer_1: str, answer_2: str) -> list[dict]:
    """Chat messages for one order: answer_1 is shown as Assistant 1."""
    user = USER_TEMPLATE.format(question=question, answer_1=answer_1, answer_2=answer_2)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def _numbers(line: str) -> list[float]:
    return [float(m) for m in _NUMBER.findall(_LABEL.sub(" ", _OUT_OF_TEN.sub(r"\1", line)))]


def parse_scores(reply: str | None) -> tuple[float, float] | None:
    """The two scores from the first non-empty line of a judge reply, or None if not exactly two.

    "x/10" counts as x, labels like "Assistant 1:" are ignored; scores must lie in [0, 10]. One
    common variant is also read: "Assistant 1: 8" and "Assistant 2: 7" on the first two lines.
    """
    lines = [ln for ln in (reply or "").split("\n") if ln.strip()]
    if not lines:
        return None
    numbers = _numbers(lines[0])
    if len(numbers) == 1 and len(lines) > 1 and _LABELLED[0].match(lines[0]) and _LABELLED[1].match(lines[1]):
        numbers += _numbers(lines[1])
    if len(numbers) != 2 or not all(0.0 <= v <= 10.0 for v in numbers):
        return None
    return numbers[0], numbers[1]
