"""Built-in verifiable instruction-following task: prompts with checkable constraints, and their reward.

Why it exists: the embedded default run needs prompts and a reward that work on a fresh machine with
no network, no GPU and no reward network, and whose gains a person can check by eye. Each prompt is
an everyday request carrying one to three constraints ("answer in at most 40 words", "use no
commas"); the constraints are stored in the record as data, so the reward never parses prompt text.

The reward of a response is the product of two factors, each in [0, 1]:

    reward = (0.25 + 0.75 * constraints) * answer

`constraints` (`constraint_score`): for a record with n constraints, k of them satisfied,

    constraints = (k + 0.5 * mean closeness of the failed constraints) / n     (no failure: 1)

A failed graded constraint (one that counts: words, bullets, numbered items, paragraphs, sentences,
included or excluded words, commas, letters in the wrong case) has closeness exp(-relative distance)
in (0, 1); a failed all-or-nothing one (start phrase, end phrase, title, JSON) has 0 (see
`constraints`). So satisfying more constraints scores higher, and the nearer miss wins.

`answer` (`answer_score`, formula in the `answer` module): whether the response says something
about the request. It counts the distinct new content words of the answer body (not function words
or vague filler, not words of the prompt, not the <<title>> or a required start/end phrase) against a
floor of 10 (less under a tight word limit) and against one per 5 words written; it discounts words
inside a 4-word sequence that repeats earlier text or copies the prompt, and halves an answer that
never names its topic.

Why a product: a checker of constraints alone was maximised by answering nothing ("Sure.", a bare
<<title>>, the request copied back, a sentence repeated to the word limit), and online DPO learned
exactly that; with `answer` at or near 0 those now score at or near 0 whatever they satisfy. The 0.25
floor keeps answer quality ordering two responses that both fail an all-or-nothing constraint, and
with the same answer, meeting more constraints still always scores higher. The reward lies in
[0, 1]; it is 1 only when every constraint holds and the answer clears both floors with no repeated
or copied text. An empty or whitespace-only response scores 0. It is deterministic, pure text and
takes well under a millisecond per response. What it cannot catch (false, off-topic-but-named or
keyword-list answers) is listed in docs/verifiable-task.md.
"""

from __future__ import annotations

import json
from importlib import resources

from optune.errors import UserError
from optune.tasks.verifiable.answer import answer_parts, answer_score
from optune.tasks.verifiable.constraints import CHECKERS

SPLITS = ("train", "heldout")
# Weight of the closeness of failed constraints; below 1, so it never outweighs one satisfied constraint.
SMOOTH_WEIGHT = 0.5
# Share of the answer score a response keeps when it meets no constraint: above 0 so answer quality
# still orders two responses that both fail an all-or-nothing constraint (those would tie at 0).
CONSTRAINT_FLOOR = 0.25


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _strings(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) and v.strip() for v in value)


# What each parameter must hold, checked before any checker runs (a bare string for "words" would
# otherwise be read letter by letter).
PARAM_TYPES = {
    "count": _count,
    "min_words": _count,
    "max_words": lambda v: v is None or _count(v),
    "words": _strings,
    "keys": _strings,
    "phrase": lambda v: isinstance(v, str) and bool(v.strip()),
}

__all__ = ["SPLITS", "answer_parts", "answer_score", "check", "constraint_score", "load", "pass_rates", "reward",
           "reward_many", "validate_constraint"]


def load(split: str) -> list[dict]:
    """The prompt records of a split: dicts with `id`, `prompt`, `topic`, `request` and `constraints`."""
    if split not in SPLITS:
        raise UserError(f"unknown verifiable split {split!r}; choose one of: {', '.join(SPLITS)}")
    text = resources.files(__name__).joinpath("data", f"{split}.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def validate_constraint(constraint: object) -> None:
    """Raise UserError unless `constraint` is {"kind": known kind, **exactly its parameters}."""
    if not isinstance(constraint, dict) or "kind" not in constraint:
        raise UserError(f"a constraint must be an object with a 'kind', got {constraint!r}")
    kind = constraint["kind"]
    if kind not in CHECKERS:
        raise UserError(f"unknown constraint kind {kind!r}; known kinds: {', '.join(sorted(CHECKERS))}")
    allowed = set(CHECKERS[kind][1])
    given = set(constraint) - {"kind"}
    required = allowed - {"min_words", "max_words"} if kind == "word_count" else allowed
    if not given <= allowed or not required <= given:
        raise UserError(
            f"constraint {kind!r} takes parameters {sorted(allowed)}, got {sorted(given)}"
        )
    if kind == "word_count" and not given:
        raise UserError("constraint 'word_count' needs min_words, max_words or both")
    for name in sorted(given):
        if not PARAM_TYPES[name](constraint[name]):
            raise UserError(f"constraint {kind!r}: bad value for {name!r}: {constraint[name]!r}")
    if (constraint.get("max_words") or 0) and constraint.get("min_words", 0) > constraint["max_words"]:
        raise UserError(f"constraint 'word_count': min_words is above max_words in {constraint!r}")


def check(constraint: dict, response: str) -> float:
    """Score of one constraint: 1.0 if satisfied, else the checker's partial score in [0, 1)."""
    validate_constraint(constraint)
    checker = CHECKERS[constraint["kind"]][0]
    return checker(response, **{k: v for k, v in constraint.items() if k != "kind"})


def reward(record: dict, response: str, answer_full_at: float = 1.0) -> float:
    """Reward in [0, 1] of `response` to `record` (formula in the module docstring). With `answer_full_at` below
    1 the answer factor saturates: min(1, answer / answer_full_at), so above that level of substance only the
    constraints order two responses."""
    if not 0.0 < answer_full_at <= 1.0:
        raise UserError(f"answer_full_at must be in (0, 1], got {answer_full_at!r}")
    constraints = constraint_score(record, response)
    if not response.strip():
        return 0.0
    answer = min(1.0, answer_score(record, response) / answer_full_at)
    return (CONSTRAINT_FLOOR + (1.0 - CONSTRAINT_FLOOR) * constraints) * answer


def constraint_score(record: dict, response: str) -> float:
    """The constraint factor in [0, 1]: (satisfied + 0.5 * mean closeness of the failed) / n."""
    _check_record(record, response)
    scores = [check(c, response) for c in record["constraints"]]
    if not response.strip():
        return 0.0
    failed = [s for s in scores if s < 1.0]  # numeric kinds: closeness; other kinds: 0.0
    satisfied = len(scores) - len(failed)
    smooth = SMOOTH_WEIGHT * sum(failed) / len(failed) if failed else 0.0
    return (satisfied + smooth) / len(scores)


def _check_record(record: object, response: object) -> None:
    """Raise UserError on a record the reward cannot read, before any text is scored."""
    constraints = record.get("constraints") if isinstance(record, dict) else None
    if not isinstance(record, dict) or not isinstance(constraints, list) or not constraints:
        raise UserError(f"record {_record_id(record)} has no list of constraints")
    for field in ("prompt", "topic"):  # optional, but read as text by the answer factor
        if field in record and not isinstance(record[field], str):
            raise UserError(f"record {_record_id(record)}: {field!r} is not text")
    if not isinstance(response, str):
        raise UserError(f"response to record {_record_id(record)} is not text")


def reward_many(records: list[dict], responses: list[str], answer_full_at: float = 1.0) -> list[float]:
    """Rewards of responses[i] to records[i]; the two lists must have the same length."""
    if len(records) != len(responses):
        raise UserError(f"{len(records)} records but {len(responses)} responses")
    return [reward(rec, resp, answer_full_at) for rec, resp in zip(records, responses)]


def pass_rates(records: list[dict], responses: list[str]) -> dict[str, float]:
    """Per constraint kind, the share of its constraints (over all records) that the responses satisfy: which
    instructions a policy follows, beside the one number of the reward."""
    met: dict[str, list[bool]] = {}
    for record, response in zip(records, responses, strict=True):
        _check_record(record, response)
        for constraint in record["constraints"]:
            met.setdefault(constraint["kind"], []).append(check(constraint, response) == 1.0)
    return {kind: sum(flags) / len(flags) for kind, flags in sorted(met.items())}


def _record_id(record: object) -> str:
    return repr(record.get("id")) if isinstance(record, dict) else repr(record)
