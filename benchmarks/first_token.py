"""How likely a policy opens its answer with a double quote: the mean probability of `"` as the first response token
over the task's held-out prompts, and on how many prompts it is the greedy choice (docs/results.md section 6).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/first_token.py runs/levers/V-s0/iter_002/checkpoint ...
"""

from __future__ import annotations

import argparse

import torch

from optune.data.prompts import load_prompts
from optune.generation import encode_prompt
from optune.models.policy import load_model, load_tokenizer
from optune.runner.prepare import resolve_policy


@torch.no_grad()
def first_token_probs(model, prompts: list[list[int]], pad_id: int, token: int) -> torch.Tensor:
    """[prompts, vocab] next-token probabilities after each (left-padded) prompt."""
    out = []
    for start in range(0, len(prompts), 16):
        batch = prompts[start:start + 16]
        width = max(map(len, batch))
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        out.append(model(input_ids=ids, attention_mask=mask).logits[:, -1].float().softmax(-1))
    return torch.cat(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", help="policies to compare with pi_0 (the embedded SmolLM2)")
    args = parser.parse_args()
    initial = resolve_policy("embedded:smollm2-135m-instruct")
    tok = load_tokenizer(initial)
    prompts = [encode_prompt(tok, p, 256) for p in load_prompts("verifiable:heldout", None)]
    quote = tok.encode('"', add_special_tokens=False)[0]
    for path in [initial, *args.checkpoints]:
        probs = first_token_probs(load_model(path).eval(), prompts, tok.pad_token_id, quote)
        greedy = int((probs.argmax(-1) == quote).sum())
        print(f"{path}: mean P(first token is a quote) {float(probs[:, quote].mean()):.3f}, the greedy first token "
              f"on {greedy}/{len(prompts)} prompts")


if __name__ == "__main__":
    main()
