"""The bad-input sweep (issue 25, item 9): every command given input it cannot use stops with exit 2 and one
line on stderr naming the problem, no traceback, before any model is loaded, leaving nothing behind.

Each case runs `optune` in this process (optune.cli.main) in a fresh folder of inputs
(tests/e2e/bad_input_world.py), with every way to load a model (transformers' from_pretrained, the policy and
reward-model loaders, building tiny:llama or converting the embedded model) and to start serving replaced by a
failure, so a case that gets as far as a model fails the test instead of loading one. The folder (the working
directory, the model cache and the temp folder included) must be exactly as it was afterwards. The hub is
forced offline (HF_HUB_OFFLINE), as on a machine without network: the tests never reach it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from optune.cli import main
from tests.e2e.bad_input_cases import CASES
from tests.e2e.bad_input_world import make_world

pytestmark = pytest.mark.slow


class ModelLoaded(AssertionError):
    """Raised in place of loading a model: the input should have been refused before."""


def _forbid(*args, **kwargs):
    raise ModelLoaded("a model was loaded (or a server started) before the input was refused")


@pytest.fixture
def guarded(monkeypatch):
    """Loading a model or starting a server fails the case; the hub is unreachable (HF_HUB_OFFLINE, which
    optune.hub then also sets in the hub libraries already imported: undone as the case ends)."""
    import datasets.config
    import huggingface_hub.constants
    import transformers
    from transformers.models.auto import auto_factory

    import optune.models.policy
    import optune.reward.hf
    import optune.rewardmodel.model
    import optune.runner.prepare
    import optune.study.server

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(_forbid))
    monkeypatch.setattr(auto_factory._BaseAutoModelClass, "from_pretrained", classmethod(_forbid))
    for module, name in ((optune.runner.prepare, "resolve_policy"), (optune.models.policy, "load_model"),
                         (optune.models.policy, "convert_gguf"), (optune.rewardmodel.model, "load_backbone"),
                         (optune.reward.hf, "load_reward_model"), (optune.study.server, "run")):
        monkeypatch.setattr(module, name, _forbid)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", huggingface_hub.constants.HF_HUB_OFFLINE)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", datasets.config.HF_HUB_OFFLINE)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", datasets.config.HF_DATASETS_OFFLINE)


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root: files with their size and modification time (a folder's own time
    changes when a probe or a lock comes and goes, which leaves nothing behind)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[str(Path(dirpath, name).relative_to(root)) + "/"] = ()
        for name in filenames:
            st = Path(dirpath, name).lstat()
            out[str(Path(dirpath, name).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def run_case(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as err:  # argparse's own errors
        code = err.code
    captured = capsys.readouterr()
    return code, captured.err


@pytest.mark.parametrize("line, expected", CASES, ids=[line for line, _ in CASES])
def test_bad_input_is_one_line_before_any_model(tmp_path, monkeypatch, capsys, guarded, line, expected):
    world = make_world(tmp_path / "w")
    for name in ("cache", "tmp"):
        (tmp_path / "w" / name).mkdir()
    monkeypatch.setenv("OPTUNE_CACHE", str(tmp_path / "w" / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "w" / "tmp"))
    monkeypatch.chdir(tmp_path / "w")
    before = snapshot(tmp_path / "w")
    argv = line.format(**world).split(" ")
    while argv[0].split("=")[0].isupper():  # leading VAR=value: the case's environment
        name, value = argv.pop(0).split("=", 1)
        monkeypatch.setenv(name, value) if value else monkeypatch.delenv(name, raising=False)
    code, err = run_case(argv, capsys)
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err[-600:]
    assert code == 2, f"exit {code}: {err}"
    assert len(lines) == 1, err
    assert lines[0].startswith("optune") and ": error: " in lines[0], err
    assert expected.format(**world) in lines[0], err
    after = snapshot(tmp_path / "w")
    assert after == before, f"left behind or changed: {sorted(set(after.items()) ^ set(before.items()))}"
