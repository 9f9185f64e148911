"""`Prompt`: the one record a prompt is, from the data reader to generation, rewards, selection and pairs.

Every public prompt set stores its prompts differently (optune.data.prompts reads them all); past the
reader, code only ever sees this dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Message = dict[str, str]
"""One chat turn: {"role": "system" | "user" | "assistant", "content": text}."""


@dataclass(frozen=True)
class Prompt:
    id: str
    """Unique within its set (the record's id, else its row number)."""
    text: str
    """The request: the last user turn."""
    history: list[Message] = field(default_factory=list)
    """The turns before `text` (system, user, assistant), rendered with it by the chat template."""
    fields: dict[str, Any] = field(default_factory=dict)
    """The task's own fields: the built-in task's constraints, topic and request; a set's category ..."""
    ids: list[int] | None = None
    """Chat-template token ids of the whole prompt, once encoded for the policy (optune.runner.prepare)."""

    def token_ids(self) -> list[int]:
        """`ids`, which optune.runner.prepare sets before any stage reads them."""
        if self.ids is None:
            raise ValueError(f"prompt {self.id} has not been encoded for the policy")
        return self.ids

    def messages(self) -> list[Message]:
        """The conversation the policy answers: history, then the request as a user turn."""
        return [*self.history, {"role": "user", "content": self.text}]

    def record(self) -> dict[str, Any]:
        """As a plain record {"id", "prompt", "history", **fields}: the task's own format (a task's reward
        reads it) and what prompts.jsonl stores (without fields)."""
        return {**self.fields, "id": self.id, "prompt": self.text, "history": list(self.history)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Prompt:
        """From {"id", "prompt", "history"?, **fields} (a reader's row, or a stored prompts.jsonl row)."""
        rest = {k: v for k, v in record.items() if k not in ("id", "prompt", "history")}
        return cls(id=str(record["id"]), text=record["prompt"], history=list(record.get("history") or []),
                   fields=rest)
