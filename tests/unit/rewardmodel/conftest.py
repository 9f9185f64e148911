"""The reward tests' tiny backbones and pair files serve the reward-model product's tests too."""

from tests.unit.reward.conftest import pair_files, tiny_bert  # noqa: F401
