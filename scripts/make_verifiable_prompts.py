"""Generate the prompts of the built-in verifiable task (train and held-out JSONL files).

    python scripts/make_verifiable_prompts.py            # rewrite src/optune/tasks/verifiable/data/
    python scripts/make_verifiable_prompts.py --check    # exit 1 if the committed files differ

Each prompt is an everyday request about one topic (from `verifiable_catalog.py`) followed by one to
three constraints stated in words; the record stores the constraints as data for the reward. The
generator uses one fixed seed and ordered lists only, so the output is identical on every run.
Constraints that contradict each other are never combined (for example JSON with bullet points),
and every numeric limit fits the ~60-word answers of a 135M policy. No (topic, set of constraint
kinds) appears twice, so training and held-out share no prompt text and no such combination.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verifiable_catalog as cat

SEED = 20240611
N_TRAIN, N_HELDOUT = 480, 180
DATA_DIR = Path(__file__).resolve().parents[1] / "src" / "optune" / "tasks" / "verifiable" / "data"

# Easy-to-learn kinds are drawn more often; every kind stays represented.
KIND_WEIGHTS = {
    "word_count": 3.0, "lowercase": 2.0, "no_commas": 2.0, "start_with": 2.0, "end_with": 2.0,
    "title": 2.0, "include_words": 2.0, "max_sentences": 2.0, "exclude_words": 1.5,
    "bullets": 1.5, "numbered": 1.5, "paragraphs": 1.0, "uppercase": 1.0, "json_keys": 1.5,
}
N_CONSTRAINTS = [(1, 3.0), (2, 4.5), (3, 2.5)]
LAYOUT = ("bullets", "numbered", "paragraphs", "max_sentences", "json_keys")  # at most one of these
JSON_PARTNERS = ("include_words", "exclude_words", "lowercase")
CLASHES = [("lowercase", "uppercase"), ("title", "paragraphs"), ("title", "start_with")]
# Parameters are drawn in this order, so later kinds can fit the earlier ones.
PARAM_ORDER = ["bullets", "numbered", "paragraphs", "max_sentences", "json_keys", "word_count",
               "include_words", "exclude_words", "start_with", "end_with", "lowercase", "uppercase",
               "no_commas", "title"]
WORD_LIMITS = {
    "max": [(0, 20), (0, 30), (0, 40), (0, 50), (0, 60)],
    "min": [(10, None), (15, None), (20, None), (25, None), (30, None)],
    "range": [(10, 30), (15, 35), (20, 40), (25, 50), (30, 60)],
}
WORD_MODE_WEIGHTS = [("max", 5.0), ("range", 3.0), ("min", 2.0)]


def topics() -> list[dict]:
    """Every topic with its family (which request templates fit it) and its keywords."""
    out = [{"topic": t, "family": "concept", "fill": {"t": t}, "keywords": k} for t, k in cat.CONCEPTS]
    out += [{"topic": t, "family": "activity", "fill": {"t": t}, "keywords": k} for t, k in cat.ACTIVITIES]
    out += [{"topic": f"{a} vs {b}", "family": "comparison", "fill": {"a": a, "b": b}, "keywords": k}
            for (a, b), k in cat.COMPARISONS]
    return out


def weighted(rng: random.Random, pairs: list[tuple[object, float]]) -> object:
    return rng.choices([p[0] for p in pairs], weights=[p[1] for p in pairs])[0]


def compatible(kind: str, chosen: list[str]) -> bool:
    """Whether `kind` can join the kinds already chosen without contradicting them."""
    if kind in chosen or (kind in LAYOUT and any(c in LAYOUT for c in chosen)):
        return False
    if any({kind, c} == set(pair) for pair in CLASHES for c in chosen):
        return False
    if kind == "json_keys":
        return all(c in JSON_PARTNERS for c in chosen)
    return "json_keys" not in chosen or kind in JSON_PARTNERS


def sample_kinds(rng: random.Random) -> list[str]:
    n = weighted(rng, N_CONSTRAINTS)
    chosen: list[str] = []
    while len(chosen) < n:
        options = [(k, w) for k, w in KIND_WEIGHTS.items() if compatible(k, chosen)]
        if not options:
            break
        chosen.append(weighted(rng, options))
    return [k for k in PARAM_ORDER if k in chosen]


def word_limit_fits(low: int, high: int | None, layout: dict | None) -> bool:
    """Whether a word range leaves room for the layout constraint (or stays short enough for it)."""
    if layout is None:
        return True
    per_item = {"bullets": 8, "numbered": 8, "paragraphs": 15}.get(layout["kind"])
    if per_item and high is not None and high < per_item * layout["count"]:
        return False
    return not (layout["kind"] == "max_sentences" and low > 12 * layout["count"])


def sample_word_count(rng: random.Random, layout: dict | None) -> dict:
    modes = [(m, w) for m, w in WORD_MODE_WEIGHTS
             if any(word_limit_fits(lo, hi, layout) for lo, hi in WORD_LIMITS[m])]
    mode = weighted(rng, modes)
    low, high = rng.choice([lim for lim in WORD_LIMITS[mode] if word_limit_fits(*lim, layout)])
    params = {"kind": "word_count"}
    if low:
        params["min_words"] = low
    if high is not None:
        params["max_words"] = high
    return params


def sample_params(rng: random.Random, kind: str, done: list[dict], topic: dict) -> dict:
    """Parameters of one constraint, given the constraints already drawn for this prompt."""
    by_kind = {c["kind"]: c for c in done}
    if kind in ("bullets", "numbered"):
        return {"kind": kind, "count": rng.randint(2, 5)}
    if kind == "paragraphs":
        return {"kind": kind, "count": rng.randint(1, 3)}
    if kind == "max_sentences":
        return {"kind": kind, "count": rng.randint(2, 5)}
    if kind == "json_keys":
        return {"kind": kind, "keys": list(rng.choice(cat.JSON_KEY_SETS))}
    if kind == "word_count":
        layout = next((c for c in done if c["kind"] in LAYOUT), None)
        return sample_word_count(rng, layout)
    if kind == "include_words":
        pool = topic["keywords"] if rng.random() < 0.7 else cat.GENERIC_INCLUDE
        return {"kind": kind, "words": rng.sample(pool, 1 if rng.random() < 0.7 else 2)}
    if kind == "exclude_words":
        included = by_kind.get("include_words", {}).get("words", [])
        pool = [w for w in cat.GENERIC_EXCLUDE if w not in included]
        return {"kind": kind, "words": rng.sample(pool, 1 if rng.random() < 0.6 else 2)}
    if kind in ("start_with", "end_with"):
        banned = by_kind.get("exclude_words", {}).get("words", [])
        phrases = cat.START_PHRASES if kind == "start_with" else cat.END_PHRASES
        fits = [p for p in phrases if not any(b in p.lower().replace("!", " ").split() for b in banned)]
        return {"kind": kind, "phrase": rng.choice(fits)}
    return {"kind": kind}


def render(rng: random.Random, c: dict) -> str:
    """The constraint in words, in one of its wordings."""
    kind, fill = c["kind"], dict(c)
    key = kind
    if kind == "word_count":
        key = {(True, True): "range_words", (False, True): "max_words", (True, False): "min_words"}[
            ("min_words" in c, "max_words" in c)]
    elif kind == "paragraphs" and c["count"] == 1:
        key = "paragraphs_1"
    elif kind in ("include_words", "exclude_words"):
        key = f"{kind}_{len(c['words'])}"
        fill.update({f"w{i}": w for i, w in enumerate(c["words"])})
    elif kind == "json_keys":
        key = f"json_keys_{len(c['keys'])}"
        fill.update({f"k{i}": k for i, k in enumerate(c["keys"])})
    if "count" in c and rng.random() < 0.5:
        fill["count"] = cat.NUMBER_WORDS[c["count"]]
    return rng.choice(cat.PHRASINGS[key]).format(**fill)


def make_prompt(rng: random.Random, topic: dict) -> dict:
    request = rng.choice(cat.REQUESTS[topic["family"]]).format(**topic["fill"])
    done: list[dict] = []
    for kind in sample_kinds(rng):
        done.append(sample_params(rng, kind, done, topic))
    rng.shuffle(done)
    text = " ".join([request] + [render(rng, c) for c in done])
    return {"prompt": text, "topic": topic["topic"], "request": request, "constraints": done}


def build(seed: int = SEED) -> tuple[list[dict], list[dict]]:
    """(train, heldout) records: unique prompt texts and unique (topic, constraint kinds)."""
    rng = random.Random(seed)
    pool, texts, combos = [], set(), set()
    all_topics = topics()
    while len(pool) < N_TRAIN + N_HELDOUT:
        order = list(all_topics)
        rng.shuffle(order)
        for topic in order:
            record = make_prompt(rng, topic)
            combo = (record["topic"], tuple(sorted(c["kind"] for c in record["constraints"])))
            if record["prompt"] in texts or combo in combos:
                continue
            texts.add(record["prompt"])
            combos.add(combo)
            pool.append(record)
    pool = pool[: N_TRAIN + N_HELDOUT]
    rng.shuffle(pool)
    train, heldout = pool[:N_TRAIN], pool[N_TRAIN:]
    return _with_ids(train, "train"), _with_ids(heldout, "heldout")


def _with_ids(records: list[dict], split: str) -> list[dict]:
    return [{"id": f"vf-{split}-{i:04d}", **r} for i, r in enumerate(records)]


def to_jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="directory for train.jsonl, heldout.jsonl")
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing")
    args = parser.parse_args(argv)
    files = dict(zip(("train", "heldout"), build()))
    for split, records in files.items():
        path, text = args.out / f"{split}.jsonl", to_jsonl(records)
        if args.check:
            same = path.exists() and path.read_text(encoding="utf-8") == text
            print(f"{path}: {'up to date' if same else 'DIFFERS'}")
            if not same:
                return 1
        else:
            write_atomic(path, text)
            print(f"wrote {len(records)} prompts to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
