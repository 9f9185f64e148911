"""Does the verifiable reward prefer real answers to degenerate ones? Old and new formula, side by side.

Why: online DPO on the constraint-only reward taught the policy to stop answering. This script
rescores held-out generations (the `heldout*.jsonl` files a run writes: prompt_id, prompt, response,
...) with the old reward (constraints only) and the new one (constraints x answer), and builds, for
every prompt, degenerate responses that a reward must not prefer to the real answer:

    sure       "Sure."
    copy       the request copied back
    title      a bare <<title>> holding the topic
    filler     a generic non-answer that names the topic, shaped to meet the constraints
    trunc5     the real answer cut to its first 5 words
    repeat     the real answer's first sentence repeated up to the word budget

    python benchmarks/reward_check.py RUN/iter_000/heldout_start.jsonl RUN/iter_002/heldout.jsonl

For each file it prints the mean old and new reward and mean words of the real answers, then, per
degenerate kind, the share of prompts where the real answer scores strictly higher (old and new
reward) and the degenerate kind's mean new reward. No model is loaded; it runs in about a second.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys

from optune.tasks import verifiable
from optune.tasks.verifiable import constraints as C

# Generic sentences a model can say about anything: the "filler" non-answer is built from them.
FILLER = [
    "This is a great question about {topic}.",
    "Many people want to know more about {topic} today.",
    "It is an interesting and important subject for everyone.",
    "There are several things you should keep in mind here.",
    "I hope this helps you get started on the right foot.",
    "Let me know if you have any other questions at all.",
    "Everyone can learn about it with a little time and effort.",
    "It is worth thinking about in your daily life.",
]
SENTENCE_RE = re.compile(r"(?<=[.!?])\s+")


def old_reward(record: dict, response: str) -> float:
    """The reward before issue 23: the constraint factor alone."""
    return verifiable.constraint_score(record, response)


def budget(record: dict) -> int:
    """Words a response may use: the word limit if any, else its minimum, else 50."""
    wc = next((c for c in record["constraints"] if c["kind"] == "word_count"), {})
    return wc.get("max_words") or max(wc.get("min_words", 0), 50)


def shape(record: dict, sentences: list[str]) -> str:
    """Lay `sentences` out to meet the record's constraints (case, commas, lists, phrases, title, JSON)."""
    by_kind = {c["kind"]: c for c in record["constraints"]}
    banned = {w.casefold() for w in by_kind.get("exclude_words", {}).get("words", [])}
    sentences = [" ".join(w for w in s.split() if w.strip(".,!?").casefold() not in banned) for s in sentences]
    sentences += [f"The word {w} fits here." for w in by_kind.get("include_words", {}).get("words", [])]
    if "max_sentences" in by_kind:
        sentences = sentences[: by_kind["max_sentences"]["count"]]
    if "word_count" in by_kind:
        sentences = _fit_words(sentences, by_kind["word_count"])
    text = _layout(by_kind, sentences)
    if "start_with" in by_kind:
        text = f"{by_kind['start_with']['phrase']} {text}"
    if "end_with" in by_kind:
        text = f"{text} {by_kind['end_with']['phrase']}"
    if "title" in by_kind:
        text = f"<<{record['topic']}>>\n{text}"
    if "no_commas" in by_kind:
        text = text.replace(",", "")
    if "lowercase" in by_kind:
        text = text.lower()
    if "uppercase" in by_kind:
        text = text.upper()
    return text


def _fit_words(sentences: list[str], wc: dict) -> list[str]:
    """Drop whole sentences above max_words, keep at least min_words (filler has room for both)."""
    kept, total = [], 0
    for s in sentences:
        n = len(C.tokenize(s))
        if wc.get("max_words") and total + n > wc["max_words"] - 8:  # room for start/end phrases
            break
        kept.append(s)
        total += n
    return kept or [" ".join(sentences[0].split()[: max(1, (wc.get("max_words") or 8) - 4)])]


def _layout(by_kind: dict, sentences: list[str]) -> str:
    if "json_keys" in by_kind:
        return json.dumps({k: " ".join(sentences) for k in by_kind["json_keys"]["keys"]})
    for kind, marker in (("bullets", "- "), ("numbered", None)):
        if kind in by_kind:
            n = by_kind[kind]["count"]
            items = (sentences * n)[:n] if len(sentences) < n else _merge(sentences, n)
            return "\n".join(f"{marker or f'{i + 1}. '}{s}" for i, s in enumerate(items))
    if "paragraphs" in by_kind:
        n = by_kind["paragraphs"]["count"]
        return "\n\n".join(_merge((sentences * n)[: max(n, len(sentences))], n))
    return " ".join(sentences)


def _merge(sentences: list[str], n: int) -> list[str]:
    """`sentences` grouped into exactly n non-empty pieces."""
    size = -(-len(sentences) // n)
    groups = [" ".join(sentences[i : i + size]) for i in range(0, len(sentences), size)]
    return (groups + sentences)[:n]


def degenerates(record: dict, answer: str) -> dict[str, str]:
    """The constructed non-answers for one record (see the module docstring)."""
    first = SENTENCE_RE.split(answer.strip())[0] or "."
    n_first, words_budget = max(1, len(C.tokenize(first))), budget(record)
    filler = [s.format(topic=record["topic"]) for s in FILLER]
    return {
        "sure": "Sure.",
        "copy": record["request"],
        "title": f"<<{record['topic']}>>",
        "filler": shape(record, filler),
        "trunc5": " ".join(answer.split()[:5]),
        "repeat": " ".join([first] * max(1, words_budget // n_first)),
    }


def check_file(path: str, records: dict[str, dict]) -> list[str]:
    """Markdown table rows for one heldout jsonl file."""
    rows = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    pairs = [(records[r["prompt_id"]], r["response"]) for r in rows]
    old = [old_reward(rec, a) for rec, a in pairs]
    new = [verifiable.reward(rec, a) for rec, a in pairs]
    words = [len(C.tokenize(a)) for _, a in pairs]
    out = [f"| {path} | real answers (n={len(pairs)}) | {statistics.mean(old):.3f} | "
           f"{statistics.mean(new):.3f} | {statistics.mean(words):.1f} | | |"]
    by_kind: dict[str, list[tuple[str, dict, float, float]]] = {}
    for (rec, answer), o, n in zip(pairs, old, new):
        for kind, text in degenerates(rec, answer).items():
            by_kind.setdefault(kind, []).append((text, rec, o, n))
    for kind, items in by_kind.items():
        d_old = [old_reward(rec, t) for t, rec, _, _ in items]
        d_new = [verifiable.reward(rec, t) for t, rec, _, _ in items]
        win_old = statistics.mean(o > d for (_, _, o, _), d in zip(items, d_old))
        win_new = statistics.mean(n > d for (_, _, _, n), d in zip(items, d_new))
        d_words = statistics.mean(len(C.tokenize(t)) for t, *_ in items)
        out.append(f"| | {kind} | {statistics.mean(d_old):.3f} | {statistics.mean(d_new):.3f} | "
                   f"{d_words:.1f} | {win_old:.2f} | {win_new:.2f} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="heldout jsonl files (prompt_id, response per row)")
    args = parser.parse_args(argv)
    records = {r["id"]: r for split in verifiable.SPLITS for r in verifiable.load(split)}
    print("| file | responses | mean old reward | mean new reward | mean words | "
          "real > this, old | real > this, new |")
    print("|---|---|---|---|---|---|---|")
    for path in args.files:
        print("\n".join(check_file(path, records)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
