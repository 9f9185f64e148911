"""Preference-pair readers: JSON/JSONL `{prompt, chosen, rejected}`, HH-RLHF transcripts, Parquet/Arrow/hub sets.

Every reader returns the same plain record, a `PreferencePair` dict:

    {"prompt": str, "history": [{"role", "content"}, ...], "chosen": str, "rejected": str}

`prompt` is the last user turn, `history` the earlier turns (user and assistant, oldest first), and
`chosen` / `rejected` the two final assistant answers. Keeping the record a plain dict lets the
reward-model trainer and offline DPO share one reader without a class hierarchy.

Pairs whose answers are identical carry no preference; they are dropped and counted
(`PreferenceData.dropped_identical`). A malformed line is a `UserError` naming file and line.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

from optune.data import tables
from optune.data.readers import read_records
from optune.errors import UserError

HUMAN = "\n\nHuman:"
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


class PreferencePair(TypedDict):
    """One preference: the conversation so far and a better and a worse final answer."""

    prompt: str
    history: list[dict[str, str]]
    chosen: str
    rejected: str
    chosen_reward: NotRequired[float]
    """The source's reward of the chosen answer, where it has one (both or neither); offline wDPO weighs by them."""
    rejected_reward: NotRequired[float]


@dataclass
class PreferenceData:
    """Pairs read from one or more sources, with the count of dropped identical pairs."""

    pairs: list[PreferencePair] = field(default_factory=list)
    dropped_identical: int = 0
    sources: list[str] = field(default_factory=list)

    def extend(self, other: PreferenceData) -> None:
        self.pairs.extend(other.pairs)
        self.dropped_identical += other.dropped_identical
        self.sources.extend(other.sources)

    def summary(self) -> str:
        return f"{len(self.pairs)} pairs from {', '.join(self.sources)} ({self.dropped_identical} identical dropped)"


class _BadRecord(ValueError):
    """A record that cannot be turned into a pair; the caller adds file and line."""


def split_hh_transcripts(chosen: str, rejected: str) -> PreferencePair:
    """Split two HH-RLHF transcripts into shared context and the two final answers.

    The twins share everything up to the last assistant turn. Some answers themselves contain
    "\\n\\nHuman:" text (the model invented a next turn), so the split point is the last
    "\\n\\nAssistant:" marker inside the *common prefix*, not the last marker of each string.
    """
    common = os.path.commonprefix([chosen, rejected])
    cut = common.rfind(ASSISTANT)
    if cut < 0:
        raise _BadRecord("chosen and rejected share no '\\n\\nAssistant:' turn (not an HH-RLHF transcript pair)")
    context = chosen[:cut]
    turns = _parse_turns(context)
    if not turns or turns[-1]["role"] != "user":
        raise _BadRecord("the shared context does not end with a '\\n\\nHuman:' turn")
    start = cut + len(ASSISTANT)
    return {
        "prompt": turns[-1]["content"],
        "history": turns[:-1],
        "chosen": chosen[start:].strip(),
        "rejected": rejected[start:].strip(),
    }


def _parse_turns(context: str) -> list[dict[str, str]]:
    """'\\n\\nHuman: a\\n\\nAssistant: b' -> [{"role": "user", ...}, {"role": "assistant", ...}]."""
    parts = _TURN.split(context)
    if parts[0].strip():
        raise _BadRecord("text before the first '\\n\\nHuman:' turn")
    turns = []
    for speaker, text in zip(parts[1::2], parts[2::2]):
        turns.append({"role": "user" if speaker == "Human" else "assistant", "content": text.strip()})
    return turns


def _answer_and_context(value: Any, key: str) -> tuple[str, list[dict[str, str]]]:
    """A chosen/rejected value: a string, or a message list whose last message is the assistant answer."""
    if isinstance(value, str):
        return value, []
    if isinstance(value, list) and value and all(_is_message(m) for m in value):
        if value[-1]["role"] != "assistant":
            raise _BadRecord(f"'{key}' message list must end with an assistant message")
        return value[-1]["content"], [{"role": m["role"], "content": m["content"]} for m in value[:-1]]
    raise _BadRecord(f"'{key}' must be a string or a non-empty list of {{role, content}} messages")


def _is_message(m: Any) -> bool:
    return isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)


def _prompt_and_history(value: Any) -> tuple[str, list[dict[str, str]]]:
    """A prompt value: a string, or a message list whose last message is the user's turn."""
    if isinstance(value, str):
        return value, []
    if isinstance(value, list) and value and all(_is_message(m) for m in value):
        if value[-1]["role"] != "user":
            raise _BadRecord("'prompt' message list must end with a user message")
        msgs = [{"role": m["role"], "content": m["content"]} for m in value]
        return msgs[-1]["content"], msgs[:-1]
    raise _BadRecord("'prompt' must be a string or a non-empty list of {role, content} messages")


def record_to_pair(record: Any) -> PreferencePair:
    """Turn one raw record (JSON object or dataset row) into a pair.

    Accepted shapes: `{prompt, chosen, rejected}` with strings or message lists, or an HH-RLHF
    `{chosen, rejected}` transcript pair (no prompt). With message lists and no prompt, the
    context is the chosen list minus its last message, which must equal the rejected one's.
    """
    if not isinstance(record, dict):
        raise _BadRecord(f"expected a JSON object, got {type(record).__name__}")
    has_c, has_r = record.get("chosen") is not None, record.get("rejected") is not None
    if has_c != has_r:
        present, missing = ("chosen", "rejected") if has_c else ("rejected", "chosen")
        raise _BadRecord(f"record has '{present}' but no '{missing}' (a preference pair needs both)")
    if not has_c:
        raise _BadRecord("record has neither 'chosen' nor 'rejected'")
    chosen, rejected = record["chosen"], record["rejected"]
    if "prompt" not in record and isinstance(chosen, str) and isinstance(rejected, str):
        hh = split_hh_transcripts(chosen, rejected)
        hh.update(_rewards(record))
        return hh
    c_text, c_ctx = _answer_and_context(chosen, "chosen")
    r_text, r_ctx = _answer_and_context(rejected, "rejected")
    if "prompt" in record:
        prompt, history = _prompt_and_history(record["prompt"])
    else:
        if c_ctx != r_ctx:
            raise _BadRecord("'chosen' and 'rejected' conversations differ before their last message")
        if not c_ctx or c_ctx[-1]["role"] != "user":
            raise _BadRecord("no 'prompt' and no user turn before the answers")
        prompt, history = c_ctx[-1]["content"], c_ctx[:-1]
    pair = PreferencePair(prompt=prompt, history=history, chosen=c_text, rejected=r_text)
    pair.update(_rewards(record))
    return pair


# Reward fields kept when a source has them (ours, and UltraFeedback-binarized's names); offline wDPO uses them.
_REWARD_KEYS = (("chosen_reward", "rejected_reward"), ("score_chosen", "score_rejected"))


class _Rewards(TypedDict, total=False):
    chosen_reward: float
    rejected_reward: float


def _rewards(record: dict) -> _Rewards:
    """The record's two rewards, where it has them; a value that is there must be a finite number (a NaN would
    train an all-NaN checkpoint), and one without the other is no reward gap."""
    for c_key, r_key in _REWARD_KEYS:
        c, r = record.get(c_key), record.get(r_key)
        if c is None and r is None:
            continue
        if c is None or r is None:
            present, missing = (c_key, r_key) if r is None else (r_key, c_key)
            raise _BadRecord(f"record has {present!r} but no {missing!r} (a reward needs both)")
        return _Rewards(chosen_reward=_reward(c, c_key), rejected_reward=_reward(r, r_key))
    return _Rewards()


def _reward(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _BadRecord(f"{key!r} must be a number; got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        raise _BadRecord(f"{key!r} must be a finite number; got an integer too large for a float") from None
    if not math.isfinite(number):
        raise _BadRecord(f"{key!r} must be a finite number; got {value}")
    return number


def pairs_from_records(records: Iterable[tuple[str, Any]], source: str) -> PreferenceData:
    """Convert (location, record) items, dropping identical answers; errors name the location."""
    data = PreferenceData(sources=[source])
    for where, record in records:
        try:
            pair = record_to_pair(record)
        except _BadRecord as err:
            raise UserError(f"{where}: {err}") from None
        if pair["chosen"] == pair["rejected"]:
            data.dropped_identical += 1
        else:
            data.pairs.append(pair)
    return data


def read_preference_file(path: str) -> PreferenceData:
    """Read a .json/.jsonl file, gzip or plain (detected from the bytes, not the name)."""
    data = pairs_from_records(read_records(path, "preference file"), path)
    if not data.pairs:
        raise UserError(f"{path}: no usable preference pairs ({data.dropped_identical} identical dropped)")
    return data


def read_table(source: str) -> PreferenceData:
    """Pairs from tabular data (optune.data.tables: Parquet, Arrow, a `datasets` folder, `hf:NAME[:SPLIT]`).

    The row conversion is the same `record_to_pair` the file readers use, so the standard and the
    conversational shapes of TRL's preference format both work.
    """
    data = pairs_from_records(tables.read_rows(source, "preference data"), source)
    if not data.pairs:
        raise UserError(f"{source}: no usable preference pairs ({data.dropped_identical} identical dropped)")
    return data


def read_preferences(sources: str | list[str]) -> PreferenceData:
    """Read and concatenate sources: JSON/JSONL files, or tabular data (Parquet, Arrow, `datasets` folders,
    `hf:NAME` / `hf:NAME:SPLIT`)."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    if not sources:
        raise UserError("no preference data sources given")
    data = PreferenceData()
    for src in sources:
        if tables.is_table(src):
            data.extend(read_table(src))
        else:
            data.extend(read_preference_file(os.path.expanduser(src)))
    return data
