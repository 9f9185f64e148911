"""A trained reward model, as a run scores with it: a sequence-classification head with one output.

The reward model keeps its own tokenizer and chat template, independent of the policy's: the
conversation (history, prompt, answer) is rendered with the RM's template, so a BERT-style
encoder and a chat LM both work. A backbone without a chat template gets `PLAIN_CHAT_TEMPLATE`,
the HH-RLHF transcript format ("\\n\\nHuman: ...\\n\\nAssistant: ..."), which is saved with the
tokenizer so that training and scoring always render the same text.

Scores are normalised with `reward_stats.json` (mean and std of training rewards) when the
checkpoint has one, so reward scales from different models are comparable in the run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from optune.errors import UserError

STATS_FILE = "reward_stats.json"
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'user' %}{{ '\\n\\nHuman: ' + m['content'] }}"
    "{% elif m['role'] == 'assistant' %}{{ '\\n\\nAssistant: ' + m['content'] }}"
    "{% else %}{{ '\\n\\n' + (m['role'] | capitalize) + ': ' + m['content'] }}{% endif %}"
    "{% endfor %}"
)
"""Used when the backbone has no chat template: the HH-RLHF transcript layout, one turn per block."""

@dataclass
class RewardStats:
    """Mean and std of training rewards; `normalise` maps raw scores to z-scores."""

    mean: float
    std: float

    def normalise(self, scores: list[float]) -> list[float]:
        std = self.std if self.std > 0 else 1.0
        return [(s - self.mean) / std for s in scores]


def prepare_tokenizer(tokenizer, model=None):
    """Give the tokenizer a pad token (from eos) and a chat template (plain) when it lacks them."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError("the reward tokenizer has neither a pad token nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    tokenizer.truncation_side = "left"  # keep the answer and the latest turns
    tokenizer.padding_side = "right"
    if model is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer


def check_single_output(config, where: str) -> None:
    """A reward model has exactly one output; a classifier with more is the wrong checkpoint."""
    is_classifier = any("ForSequenceClassification" in a for a in (config.architectures or []))
    if is_classifier and config.num_labels != 1:
        raise UserError(f"{where} is a classifier with {config.num_labels} outputs; a reward model needs exactly 1")


def check_reward_dir(path: str) -> None:
    """A reward checkpoint is a folder with a readable config.json: checked before anything loads."""
    from optune.models.policy import check_model_dir

    if not os.path.isdir(path):
        raise UserError(f"reward model directory not found: {path}")
    check_model_dir(Path(path), f"reward model {path}")


def load_reward_model(path: str):
    """Load a trained reward checkpoint -> (model in eval mode, tokenizer, RewardStats or None)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    check_reward_dir(path)
    try:
        config = AutoConfig.from_pretrained(path)
        if config.num_labels != 1:
            raise UserError(f"{path} has {config.num_labels} outputs; a reward model needs exactly 1")
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load reward model {path}: {str(err).splitlines()[0]}") from None
    prepare_tokenizer(tokenizer, model)
    model.eval()
    return model, tokenizer, read_stats(path)


def read_stats(path: str) -> RewardStats | None:
    file = os.path.join(path, STATS_FILE)
    if not os.path.isfile(file):
        return None
    try:
        with open(file, encoding="utf-8") as fh:
            raw = json.load(fh)
        return RewardStats(mean=float(raw["mean"]), std=float(raw["std"]))
    except (OSError, ValueError, KeyError, TypeError) as err:  # scores would be normalised by what it held
        from optune.store import damage

        problem = "not a JSON object" if isinstance(err, TypeError) else damage(err)
        raise UserError(f"{file} is damaged ({problem}); it holds the reward model's score mean and std, which "
                        "its scores are normalised by: restore it, or train the model again") from None


def render(tokenizer, prompt: str, response: str, history: list[dict] | None = None) -> str:
    """The conversation as text in the RM's own chat template (what the RM was trained on)."""
    messages = list(history or []) + [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": response},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def encode(tokenizer, texts: list[str], max_length: int) -> list[list[int]]:
    """Token ids per text, left-truncated (the answer and latest turns survive).

    The tokenizer's special tokens ([CLS]/[SEP], BOS) are added unless the chat template already
    wrote its own start token, so neither the plain nor a model's own template doubles them.
    """
    if not texts:
        return []
    starts = [t for t in (tokenizer.bos_token, tokenizer.cls_token) if t]
    add_special = not (any(texts[0].startswith(t) for t in starts))
    enc = tokenizer(texts, add_special_tokens=add_special, truncation=True, max_length=max_length)
    return enc["input_ids"]


def collate(tokenizer, sequences: list[list[int]]) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence in the batch (dynamic padding: short batches run fast)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def forward_scores(model, tokenizer, sequences: list[list[int]]) -> torch.Tensor:
    """[N] scalar rewards for tokenised sequences (gradients flow if enabled by the caller)."""
    batch = collate(tokenizer, sequences)
    return model(**batch).logits.squeeze(-1).float()


@torch.no_grad()
def score_sequences(model, tokenizer, sequences: list[list[int]], batch_size: int = 16) -> list[float]:
    """Raw scores in eval mode, batched; sorted by length inside so padding stays small."""
    was_training = model.training
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    out = [0.0] * len(sequences)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        scores = forward_scores(model, tokenizer, [sequences[i] for i in idx])
        for i, s in zip(idx, scores.tolist()):
            out[i] = s
    model.train(was_training)
    return out


def score_texts(
    model,
    tokenizer,
    prompts: list[str],
    responses: list[str],
    histories: list[list[dict]] | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
    stats: RewardStats | None = None,
) -> list[float]:
    """Reward of each (prompt, response), rendered with the RM's chat template, batched.

    `stats` defaults to the checkpoint's reward_stats.json (found next to the loaded weights);
    scores are then z-scores of the training reward distribution.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    histories = histories or [[] for _ in prompts]
    texts = [render(tokenizer, p, r, h) for p, r, h in zip(prompts, responses, histories)]
    limit = max_length or model_max_length(model, tokenizer)
    scores = score_sequences(model, tokenizer, encode(tokenizer, texts, limit), batch_size)
    if stats is None:
        stats = read_stats(getattr(model.config, "_name_or_path", "") or "")
    return stats.normalise(scores) if stats else scores


def model_max_length(model, tokenizer) -> int:
    """The trained length if recorded in the config, else the backbone's position limit (or 512)."""
    trained = getattr(model.config, "optune_max_length", None)
    if trained:
        return int(trained)
    limits = [getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    limits = [int(x) for x in limits if x and x < 10**8]  # tokenizers use 1e30 for "no limit"
    return min(limits) if limits else 512


