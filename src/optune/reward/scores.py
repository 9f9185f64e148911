"""What a reward returns, checked where it enters: one finite real number per response, else one line.

A reward that returns the wrong thing must stop the run before anything trains on it: a NaN trains an all-NaN
checkpoint, a dict's keys would silently become the scores, a bool is a label, not a score. Every backend's
scores (and each of a mix's components) pass `check_scores`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

from optune.errors import UserError


def check_scores(scores, n: int, who: str = "the reward function") -> list[float]:
    """`scores` as n finite floats, else one line saying what `who` returned instead.

    Accepted: any iterable of real numbers (Python, numpy or 0-d tensor scalars), and 1-d numpy arrays or
    torch tensors; refused: strings, mappings, bools, other shapes, the wrong count and NaN or infinity.
    """
    items = _items(scores, n, who)
    if len(items) != n:
        raise UserError(f"{who} returned {len(items)} scores for {n} responses")
    out = []
    for i, value in enumerate(items):
        number = _number(value)
        if number is None:
            raise UserError(f"{who} returned something that is not a list of numbers: score {i} is {_show(value)}")
        if not math.isfinite(number):
            raise UserError(f"{who} returned a non-finite score ({number}) for response {i}")
        out.append(number)
    return out


def _items(scores, n: int, who: str) -> list:
    """The returned items as a list: arrays and tensors by their shape, never a mapping's keys."""
    if isinstance(scores, (str, bytes)):
        raise UserError(f"{who} returned a string, not a list of numbers")
    if isinstance(scores, Mapping):  # iterating it would score by its keys
        raise UserError(f"{who} returned a {type(scores).__name__} (a mapping), not a list of numbers")
    shape = getattr(scores, "shape", None)
    if shape is not None and hasattr(scores, "tolist"):  # a numpy array or torch tensor
        if tuple(shape) != (n,):
            raise UserError(f"{who} returned an array of shape {tuple(shape)}; expected shape ({n},), one score "
                            "per response")
        return list(scores.tolist())
    try:
        return list(scores)
    except TypeError:
        raise UserError(f"{who} returned {type(scores).__name__}, not a list of numbers") from None


def _number(value) -> float | None:
    """A real number as a float; None for anything else (bools included: True is a label, not a score)."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):  # a 0-d array or tensor
        value = value.item()
    if isinstance(value, bool) or type(value).__name__ in ("bool", "bool_") or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer too large for a float: not a finite score
        return math.inf


def _show(value) -> str:
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def describe(err: BaseException) -> str:
    """`ValueError: message`, on one line (see the traceback with optune --debug)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def eos_penalized(scores: list[float], eos: list[bool], penalty: float) -> list[float]:
    """Scores with `penalty` subtracted where the response did not end with EOS (reward.missing_eos_penalty)."""
    if not penalty:
        return scores
    return [s - penalty * (not ended) for s, ended in zip(scores, eos, strict=True)]
