"""A deterministic toy reward for smoke tests (configs/tiny.yaml): no model, smooth, rarely tied.

Rewards lowercase ASCII letters and spaces, so even a random byte-level policy has something to learn.
"""

from __future__ import annotations


def letter_fraction(prompts: list[str], responses: list[str]) -> list[float]:
    """Share of characters that are a-z or space, minus a tiny length term that breaks most ties."""
    out = []
    for text in responses:
        good = sum(ch.islower() and ch.isascii() or ch == " " for ch in text)
        out.append(good / max(len(text), 1) - 1e-3 * len(text) / 1000)
    return out
