"""IFEval (Zhou et al., 2023): 541 prompts with verifiable instructions, scored by IFEval's own checkers.

Pure scoring: responses in, per-prompt strict/loose results and the four standard accuracies out
(prompt-level and instruction-level, strict and loose, in percent). The checkers are lm-eval's copy of Google's
(optune.eval.ifeval_checkers); strict checks the response as it is, loose also the response without its first
line, its last line, both, and each of those without "*" (the paper's definition, lm-eval's code).

The prompts are read from IFEval's `input_data.jsonl` (a path given; never shipped with optune) or, where a hub
is reachable, from the hub dataset `google/IFEval` (needs the hf-datasets extra).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from optune.data.readers import parse_records, read_text
from optune.errors import UserError
from optune.eval.ifeval_checkers import checkers
from optune.eval.paired import PairedDifference, paired_bootstrap

HUB_ID = "google/IFEval"
METRICS = ("prompt_strict", "inst_strict", "prompt_loose", "inst_loose")
"""The four accuracies: prompt level (every instruction of a prompt followed) and instruction level, strict
and loose; lm-eval names them prompt_level_strict_acc, inst_level_strict_acc, ..."""
METRIC_TITLES = {"prompt_strict": "prompt strict", "inst_strict": "inst strict",
                 "prompt_loose": "prompt loose", "inst_loose": "inst loose"}


@dataclass(frozen=True)
class IFEvalItem:
    key: int
    prompt: str
    instruction_id_list: tuple[str, ...]
    kwargs: tuple[dict, ...]
    """One dict of checker arguments per instruction (keys with None values are ignored, as in lm-eval)."""


@dataclass(frozen=True)
class PromptScore:
    key: int
    strict: tuple[bool, ...]
    """Per instruction: followed by the response as it is."""
    loose: tuple[bool, ...]
    """Per instruction: followed by the response or one of its loose variants."""

    def public(self) -> dict:
        return {"key": self.key, "strict": list(self.strict), "loose": list(self.loose)}


def item_from_record(record: dict, where: str) -> IFEvalItem:
    """One input_data.jsonl row (key, prompt, instruction_id_list, kwargs) as an item; one line if it is not."""
    key, prompt, ids, kwargs = (record.get(k) for k in ("key", "prompt", "instruction_id_list", "kwargs"))
    if not isinstance(key, int) or isinstance(key, bool):
        raise UserError(f"{where}: an IFEval row needs an integer \"key\"")
    if not isinstance(prompt, str) or not prompt:
        raise UserError(f"{where}: an IFEval row needs a non-empty \"prompt\" string")
    if not (isinstance(ids, list) and ids and all(isinstance(i, str) for i in ids)):
        raise UserError(f"{where}: \"instruction_id_list\" must be a non-empty list of instruction ids")
    if not (isinstance(kwargs, list) and len(kwargs) == len(ids) and all(isinstance(k, dict) for k in kwargs)):
        raise UserError(f"{where}: \"kwargs\" must be a list of {len(ids)} objects, one per instruction")
    return IFEvalItem(key, prompt, tuple(ids), tuple(kwargs))


def read_items(path: str | Path, limit: int | None = None) -> list[IFEvalItem]:
    """The IFEval prompts of a JSONL file (IFEval's input_data.jsonl), the first `limit` of them."""
    items: list[IFEvalItem] = []
    for where, record in parse_records(read_text(path, "IFEval data file"), path):
        if limit is not None and len(items) >= limit:
            break
        items.append(item_from_record(record, str(where)))
    if not items:
        raise UserError(f"IFEval data file {path} holds no prompts")
    keys = [i.key for i in items]
    if len(set(keys)) != len(keys):
        raise UserError(f"IFEval data file {path}: a key appears twice")
    return items


def load_items(source: str, limit: int | None = None) -> list[IFEvalItem]:
    """IFEval prompts from a file, or from the hub dataset `source` (e.g. google/IFEval) when no such file exists."""
    if Path(source).exists() or source.endswith((".jsonl", ".json", ".gz")) or source.count("/") != 1:
        return read_items(source, limit)
    try:
        from datasets import load_dataset

        rows = load_dataset(source, split="train")
    except ImportError:
        raise UserError(f"--data {source} is no file, and the hub needs the hf-datasets extra; give the path of "
                        "IFEval's input_data.jsonl") from None
    except Exception as err:  # the hub is unreachable, or no such dataset: one line either way
        raise UserError(f"--data {source} is no file and could not be loaded from the hub "
                        f"({type(err).__name__}); give the path of IFEval's input_data.jsonl") from None
    n = len(rows) if limit is None else min(limit, len(rows))
    return [item_from_record(dict(rows[i]), f"{source} row {i}") for i in range(n)]


def read_responses(path: str | Path, items: Sequence[IFEvalItem]) -> list[str]:
    """Stored responses for `items`, IFEval's own format: JSONL rows with "prompt" and "response" (matched by
    prompt text), or with "key" and "response"."""
    by_prompt: dict[str, str] = {}
    by_key: dict[int, str] = {}
    for where, record in parse_records(read_text(path, "responses file"), path):
        response = record.get("response")
        if not isinstance(response, str):
            raise UserError(f"{where}: a response row needs a \"response\" string")
        if isinstance(record.get("prompt"), str):
            by_prompt[record["prompt"]] = response
        if isinstance(record.get("key"), int):
            by_key[record["key"]] = response
    found = [by_key.get(i.key, by_prompt.get(i.prompt)) for i in items]
    missing = [i for i, r in zip(items, found) if r is None]
    if missing:
        raise UserError(f"responses file {path}: no response for {len(missing)} of {len(items)} prompts "
                        f"(first: key {missing[0].key}, {missing[0].prompt[:50]!r})")
    return [r for r in found if r is not None]


def check_instructions(items: Sequence[IFEvalItem]) -> None:
    """Every instruction id is one the checkers know (said before any generation)."""
    known = checkers().instructions_registry.INSTRUCTION_DICT
    for item in items:
        unknown = [i for i in item.instruction_id_list if i not in known]
        if unknown:
            raise UserError(f"IFEval prompt {item.key}: unknown instruction id {unknown[0]!r}")


def score_response(item: IFEvalItem, response: str) -> PromptScore:
    """Strict and loose results of one response, by lm-eval's test_instruction_following_strict/_loose.

    A checker whose arguments are missing or invalid draws them at random (IFEval's prompt 1129 asks for the
    "letter" "!", so a random letter is counted): Python's `random` is seeded with the prompt's key for the
    call, so a response scores the same on every run (the caller's random state is restored)."""
    utils = checkers()
    inp = utils.InputExample(key=item.key, instruction_id_list=list(item.instruction_id_list), prompt=item.prompt,
                             kwargs=[dict(k) for k in item.kwargs])
    state = random.getstate()
    try:
        random.seed(item.key)
        strict = utils.test_instruction_following_strict(inp, response).follow_instruction_list
        random.seed(item.key)
        loose = utils.test_instruction_following_loose(inp, response).follow_instruction_list
    finally:
        random.setstate(state)
    return PromptScore(item.key, tuple(bool(x) for x in strict), tuple(bool(x) for x in loose))


def score(items: Sequence[IFEvalItem], responses: Sequence[str]) -> list[PromptScore]:
    """Per-prompt results of one system's responses (one per item, in order)."""
    if len(items) != len(responses):
        raise ValueError(f"{len(responses)} responses for {len(items)} prompts")
    check_instructions(items)
    return [score_response(item, response) for item, response in zip(items, responses)]


def accuracies(scores: Sequence[PromptScore]) -> dict[str, float]:
    """The four IFEval accuracies in percent (METRICS)."""
    if not scores:
        raise ValueError("accuracies of no prompts")
    n_inst = sum(len(s.strict) for s in scores)
    return {
        "prompt_strict": 100.0 * sum(all(s.strict) for s in scores) / len(scores),
        "inst_strict": 100.0 * sum(sum(s.strict) for s in scores) / n_inst,
        "prompt_loose": 100.0 * sum(all(s.loose) for s in scores) / len(scores),
        "inst_loose": 100.0 * sum(sum(s.loose) for s in scores) / n_inst,
    }


def compare(a: Sequence[PromptScore], b: Sequence[PromptScore], n_resamples: int = 2000,
            seed: int = 0) -> dict[str, PairedDifference]:
    """System A minus system B on each of the four accuracies, with paired bootstrap intervals over prompts."""
    if [s.key for s in a] != [s.key for s in b]:
        raise ValueError("compare needs the two systems' scores on the same prompts, in the same order")
    out: dict[str, PairedDifference] = {}
    for kind in ("strict", "loose"):
        fa, fb = [getattr(s, kind) for s in a], [getattr(s, kind) for s in b]
        out[f"prompt_{kind}"] = paired_bootstrap([all(x) for x in fa], [all(x) for x in fb],
                                                 n_resamples=n_resamples, seed=seed)
        out[f"inst_{kind}"] = paired_bootstrap([sum(x) for x in fa], [sum(x) for x in fb], [len(x) for x in fa],
                                               n_resamples=n_resamples, seed=seed)
    return {m: out[m] for m in METRICS}
