"""The per-phase clock of one iteration and the progress bars every stage shows.

Below every stage (it imports nothing of optune's), so generation, scoring, training and evaluation time
themselves the same way without knowing about the loop.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class Clock:
    """Seconds spent in each phase of an iteration ("generation", "rewarding", ...), summed over calls.

    Starts from the seconds an interrupted attempt at the same iteration already recorded, so a resumed
    iteration's time split counts the work done before the kill.
    """

    def __init__(self, seconds: dict[str, float] | None = None):
        self.seconds: dict[str, float] = dict(seconds or {})

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class Progress(Protocol):
    """What a stage reports its progress to (a tqdm bar)."""

    def update(self, n: float = 1) -> object: ...

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> object: ...


def progress(desc: str, total: int, enabled: bool = True):
    """A tqdm bar that disappears when done (disabled on every process but the main one, and where there is
    nothing to do: an empty "iter 0 reference: 0it" bar reads as a stage that hung)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="it", leave=False, dynamic_ncols=True,
                disable=not enabled or total == 0)
