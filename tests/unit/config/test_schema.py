"""config.schema.read_yaml: a config file's mapping, and one line for what PyYAML would let pass (a key twice)."""

import pytest

from optune.config.schema import read_yaml
from optune.errors import UserError


def _file(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,where,key,first", [
    ("iterations: 2\nseed: 1\niterations: 3\n", "line 3, column 1", "iterations", 1),
    ("train:\n  lr: 1.0e-3\n  epochs: 1\n  lr: 5.0e-4\n", "line 4, column 3", "lr", 2),
    ("loss: {type: dpo, type: wdpo}\n", "line 1, column 19", "type", 1),
    ("reward:\n  components:\n    - name: a\n      weight: 1\n      weight: 2\n", "line 5, column 7", "weight", 4),
])
def test_a_key_given_twice_is_one_line_naming_it_and_both_lines(tmp_path, text, where, key, first):
    path = _file(tmp_path, text)
    with pytest.raises(UserError) as err:
        read_yaml(path)
    assert str(err.value) == f"config file {path}: {where}: duplicate key {key!r} (first given on line {first})"


def test_the_same_key_in_different_sections_and_merge_overrides_are_fine(tmp_path):
    text = ("base: &b\n  lr: 1\n  epochs: 2\ntrain:\n  <<: *b\n  lr: 3\nloss:\n  lr: 4\n")
    assert read_yaml(_file(tmp_path, text)) == {"base": {"lr": 1, "epochs": 2}, "train": {"lr": 3, "epochs": 2},
                                               "loss": {"lr": 4}}
