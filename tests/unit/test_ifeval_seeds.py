"""benchmarks/ifeval_seeds.py: accuracies per seed and differences from pi_0, on hand-made scores."""

import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import ifeval_seeds  # noqa: E402

BASE = {1: {"strict": [True, False], "loose": [True, True]}, 2: {"strict": [False], "loose": [False]}}
SEED = {1: {"strict": [True, True], "loose": [True, True]}, 2: {"strict": [False], "loose": [True]}}


def test_accuracies_and_differences_hand_worked():
    lines = ifeval_seeds.table(BASE, [SEED])
    # pi_0: prompt strict 0/2, inst strict 1/3, prompt loose 1/2, inst loose 2/3; the seed: 1/2, 2/3, 2/2, 3/3
    assert lines[2] == "| pi_0 | 0.00 | 33.33 | 50.00 | 66.67 |"
    assert lines[3] == "| seed 0 | 50.00 | 66.67 | 100.00 | 100.00 |"
    assert lines[-4].startswith("  prompt_strict: +50.0000")
    assert lines[-3].startswith("  inst_strict: +33.3333")
    assert lines[-1].startswith("  inst_loose: +33.3333")


def test_different_prompts_are_refused():
    with pytest.raises(SystemExit, match="different prompts"):
        ifeval_seeds.table(BASE, [{1: SEED[1]}])
