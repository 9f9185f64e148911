"""What the sampler-log-prob tests (transformers decode loop, vLLM) compare against: the reference
log-probs of a run's iteration recomputed by a float32 transformers forward pass."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import REPO


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def forward_reference(model_path: str, run: Path, t: int) -> list[float]:
    """Chosen then rejected log-probs of iteration t's reference pairs under model_path (float32 forward)."""
    from optune.data.prompts import load_prompts
    from optune.generation import encode_prompt
    from optune.models.policy import load_model, load_tokenizer
    from optune.pairs import Pair
    from optune.training.logps import reference_logps

    tok = load_tokenizer(model_path)
    prompts = {p.id: p for p in load_prompts(str(REPO / "tests/data/prompts8.jsonl"))}
    state = {r["prompt_id"]: r for r in rows(run / f"iter_{t:03d}" / "responses.jsonl")}
    ref = json.loads((run / f"iter_{t:03d}" / "ref_logps.json").read_text())
    pairs = []
    for pid in ref["prompt_ids"]:
        a, b = state[pid]["responses"]
        chosen, rejected = (a, b) if a["reward"] >= b["reward"] else (b, a)
        pairs.append(Pair.of(encode_prompt(tok, prompts[pid], 256), chosen["ids"], rejected["ids"]))
    c, r = reference_logps(load_model(model_path), pairs, tok.pad_token_id, 8, bf16=False)
    return c + r
