"""Counts and numbers in log lines, written the way a reader expects them."""

from __future__ import annotations


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 iteration", "2 iterations" (`many`: an irregular plural)."""
    return f"{n} {word if n == 1 else many or word + 's'}"


def num(value: float, digits: int = 4) -> str:
    """`value` to `digits` decimals, a tiny negative number as 0.0000: "-0.0000" reads as a loss that is not there."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text
