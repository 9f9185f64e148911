"""optune's Python API in one script: tune a policy with a Python reward function, then export its preference pairs.

    python examples/api_quickstart.py [--out DIR]

It runs configs/tiny.yaml (a tiny random policy, 8 prompts, 2 iterations: well under a minute on a CPU). For a
real run swap in your own policy, prompts and reward, e.g.

    optune.run(policy={"model": "HuggingFaceTB/SmolLM2-135M-Instruct"},
               data={"train": "hf:trl-lib/ultrafeedback-prompt", "heldout": "hf:trl-lib/ultrafeedback-prompt:test"},
               reward={"function": my_reward})
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import optune

REPO = Path(__file__).resolve().parents[1]
PROMPTS = str(REPO / "tests" / "data" / "prompts8.jsonl")


def lowercase_share(prompts: list[str], responses: list[str]) -> list[float]:
    """The reward: share of lowercase letters and spaces. Any f(prompts, responses) -> list of floats works."""
    return [sum(c.islower() or c == " " for c in text) / max(len(text), 1) for text in responses]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="folder for the run and the export (default: a new temporary folder)")
    out = Path(parser.parse_args().out or tempfile.mkdtemp(prefix="optune-quickstart-"))

    result = optune.run(REPO / "configs" / "tiny.yaml",
                        output_dir=str(out / "run"),
                        data={"train": PROMPTS, "heldout": PROMPTS},  # absolute: the script may run from anywhere
                        reward={"function": lowercase_share},
                        selection__rho=0.5)
    for m in result.metrics:  # optune.runner.metrics.IterationMetrics; m.to_log() is the row of metrics.jsonl
        print(f"iteration {m.iteration}: regenerated {m.n_regenerated} prompts, "
              f"trained on {m.pairs_trained} pairs, loss {m.train.get('loss', float('nan')):.4f}")
    print("held-out reward, start then after each iteration:", [round(r, 4) for r in result.heldout_rewards])
    print("final policy:", result.checkpoint)

    exported = optune.export(result.run_dir, out / "preferences")
    print(f"{exported.rows} preference pairs in TRL's format: {exported.parquet}")
    print("model card:", exported.model_card)


if __name__ == "__main__":
    main()
