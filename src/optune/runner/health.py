"""Whether the policy still answers: plain statistics of held-out responses, a KL estimate, and warnings.

A reward going up is not a better model: the built-in task's first reward was won by answering nothing
(responses shrank from 41 to 15 words while it rose). So every iteration records, beside the reward, what a
person would check first (length in words and tokens, whether responses end with EOS, whether they repeat
themselves, each constraint kind's pass rate on the built-in task) and how far the policy moved (the mean
log-ratio to the reference and to pi_0 on its own held-out responses), and the run says so in its log when
length or EOS collapses, or repetition spreads, while the reward rises.

Pure functions of texts and numbers: no model, no I/O (optune.runner.heldout computes the log-probs).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from optune.formatting import num

WORD_RE = re.compile(r"\w+(?:['\u2019-]\w+)*")
NGRAM = 4
"""A response repeats itself when one 4-word sequence occurs three times, or a non-empty line twice."""
NGRAM_REPEATS = 3

SHRINK = 0.25
"""Relative fall in mean words (with the reward up) that the log calls out."""
EOS_DROP = 0.2
"""Absolute fall in the share of responses ending with EOS that the log calls out."""
REPEAT_RISE = 0.15
"""Absolute rise in the share of repetitive responses that the log calls out."""


def words(text: str) -> int:
    return len(WORD_RE.findall(text))


def is_repetitive(text: str) -> bool:
    """A non-empty line that appears twice, or a 4-word sequence (case-folded) that appears three times."""
    lines = [ln.strip().casefold() for ln in text.splitlines() if ln.strip()]
    if len(lines) != len(set(lines)):
        return True
    tokens = [w.casefold() for w in WORD_RE.findall(text)]
    grams = Counter(tuple(tokens[i:i + NGRAM]) for i in range(len(tokens) - NGRAM + 1))
    return any(n >= NGRAM_REPEATS for n in grams.values())


def response_stats(texts: Sequence[str], n_tokens: Sequence[int], eos: Sequence[bool]) -> dict[str, float]:
    """Mean words and tokens per response, and the shares that end with EOS and that repeat themselves."""
    n = len(texts)
    if n == 0:
        return {}
    return {"length_words": sum(map(words, texts)) / n, "length_tokens": sum(n_tokens) / n,
            "eos_rate": sum(map(bool, eos)) / n, "repetition_rate": sum(map(is_repetitive, texts)) / n}


def log_ratio(policy_logps: Sequence[float], other_logps: Sequence[float]) -> float:
    """Mean of log pi(y|x) - log q(y|x) over the policy's own responses: the Monte Carlo estimate of
    KL(pi || q) where the responses are samples of pi; on greedy held-out responses it is the log-ratio at
    the policy's mode, an indicator of how far it moved rather than an unbiased KL."""
    if len(policy_logps) != len(other_logps) or not policy_logps:
        raise ValueError("one log-prob per response under each policy is needed")
    return sum(p - q for p, q in zip(policy_logps, other_logps)) / len(policy_logps)


def warnings(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """What a person should look at, comparing held-out health before and after an iteration's training.

    Each input holds `reward` and the keys of `response_stats`; a key missing on either side is skipped.
    """
    out = []
    rose = after.get("reward", 0.0) > before.get("reward", 0.0)
    w0, w1 = before.get("length_words"), after.get("length_words")
    if rose and w0 and w1 is not None and w1 < (1 - SHRINK) * w0:
        out.append(f"held-out responses got {1 - w1 / w0:.0%} shorter ({w0:.1f} -> {w1:.1f} words) while the "
                   f"held-out reward rose ({num(before['reward'])} -> {num(after['reward'])}): the reward may be won "
                   f"by answering less; read the held-out responses")
    e0, e1 = before.get("eos_rate"), after.get("eos_rate")
    if e0 is not None and e1 is not None and e1 < e0 - EOS_DROP:
        out.append(f"fewer held-out responses end with EOS ({e0:.0%} -> {e1:.0%}): they run into max_new_tokens")
    r0, r1 = before.get("repetition_rate"), after.get("repetition_rate")
    if r0 is not None and r1 is not None and r1 > r0 + REPEAT_RISE:
        out.append(f"more held-out responses repeat themselves ({r0:.0%} -> {r1:.0%})")
    return out


def best_iteration(curve: Sequence[tuple[int, float]]) -> int | None:
    """The iteration whose trained policy scored the highest held-out reward (the earliest on a tie), from
    (iteration, held-out reward) pairs; None without any."""
    return -max((reward, -t) for t, reward in curve)[1] if curve else None


def stop_early(curve: Sequence[float], patience: int) -> bool:
    """Whether the held-out reward has fallen at each of the last `patience` iterations (0: never stop).

    `curve` is the starting policy's reward (where measured) followed by each iteration's.
    """
    if patience < 1 or len(curve) < patience + 1:
        return False
    tail = curve[-(patience + 1):]
    return all(b < a for a, b in zip(tail, tail[1:]))
