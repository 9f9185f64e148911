"""The packed path (prompt once per pair) computes the same log-probs and gradients as the plain path."""

import copy

import pytest
import torch

from optune.config.run import TrainConfig
from optune.losses import make_loss
from optune.models.policy import load_model
from optune.pairs import Pair
from optune.training import collate, pair_logps, reference_logps, response_logps, train_iteration
from optune.training.packing import CHOSEN, PAD, PROMPT, REJECTED, pack, packed_logps, rows_for, supports
from optune.training.reference import References
from optune.training.update import TrainInputs


def varied_pairs(n=9, seed=0, vocab=200):
    """Prompts of 1-11 tokens, responses of 0-9 (empty ones included), so rows pack unevenly."""
    g = torch.Generator().manual_seed(seed)

    def ids(lo, hi):
        return torch.randint(3, vocab, (int(torch.randint(lo, hi, (1,), generator=g)),), generator=g).tolist()

    pairs = [Pair.of(ids(1, 12), ids(0, 10), ids(0, 10), 0.2 * i, 0.1) for i in range(n)]
    pairs[0] = Pair.of(pairs[0].prompt_ids, [], pairs[0].rejected.ids or [7], 1.0, 0.0)
    return pairs


def plain(model, pairs):
    b = collate(pairs, pad_id=0)
    return response_logps(model, b["input_ids"], b["attention_mask"], b["loss_mask"])


def value_and_grads(model, fn):
    model.zero_grad(set_to_none=True)
    logps = fn()
    n = len(logps) // 2
    weights = torch.linspace(-1.0, 1.5, len(logps), dtype=logps.dtype)  # any fixed weighting of all log-probs
    (logps * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return logps.detach(), grads, n


def assert_same(model, fast, rtol=1e-5):
    want, want_grads, _ = value_and_grads(model, lambda: plain(model, PAIRS))
    got, got_grads, _ = value_and_grads(model, fast)
    assert torch.allclose(got, want, rtol=rtol, atol=rtol * want.abs().max()), (got - want).abs().max()
    for name, g in want_grads.items():
        rel = float((got_grads[name] - g).norm() / g.norm().clamp_min(1e-30))
        assert rel < rtol, f"{name}: relative gradient difference {rel:.2e}"


PAIRS = varied_pairs()


def test_block_layout_positions_and_predictions():
    b = pack([Pair.of([5, 6], [7], [8, 9])], pad_id=0)
    assert b.input_ids.tolist() == [[5, 6, 7, 8, 9]]
    assert b.position_ids.tolist() == [[0, 1, 2, 2, 3]]  # the rejected response restarts after the prompt
    assert b.part.tolist() == [[PROMPT, PROMPT, CHOSEN, REJECTED, REJECTED]]
    # chosen 7 is predicted by the prompt's last token; rejected 8 too, 9 by rejected 8
    assert list(zip(b.predict_at.tolist(), b.targets.tolist(), b.sequence.tolist())) == [
        (1, 7, 0), (1, 8, 1), (3, 9, 1)]
    allowed = b.attention_mask("sdpa", torch.float32)[0, 0].int().tolist()
    assert allowed == [[1, 0, 0, 0, 0],
                       [1, 1, 0, 0, 0],
                       [1, 1, 1, 0, 0],
                       [1, 1, 0, 1, 0],   # rejected 8 sees the prompt, not chosen 7
                       [1, 1, 0, 1, 1]]


def test_blocks_of_a_row_see_neither_each_other_nor_padding():
    pairs = [Pair.of([5, 6], [7], [8]), Pair.of([4], [3], [9, 9]), Pair.of([3, 3, 3, 3, 3, 3, 3], [4], [5])]
    b = pack(pairs, pad_id=0, attention_weight=0.0)  # attention free: every block in one row
    assert b.input_ids.shape == (1, 4 + 4 + 9)
    mask = b.attention_mask("sdpa", torch.float32)[0, 0]
    block = b.block[0]
    assert not mask[block[:, None] != block[None, :]].any()
    eager = b.attention_mask("eager", torch.float32)[0, 0]
    assert torch.equal(eager == 0, mask) and (eager[~mask] == torch.finfo(torch.float32).min).all()

    b = pack(pairs, pad_id=0, attention_weight=1e9)  # attention dear: rows as narrow as the longest block
    assert b.input_ids.shape == (2, 9) and b.block[1].tolist() == [0] * 4 + [1] * 4 + [PAD]
    mask = b.attention_mask("sdpa", torch.float32)[:, 0]
    pad = b.block == PAD
    assert mask.any(-1).all(), "a fully masked row makes softmax NaN"
    assert not (mask & pad[:, None, :] & ~pad[:, :, None]).any(), "a real token attends to padding"


def test_rows_hold_every_block_once_and_fit_the_width():
    lengths = [30, 7, 12, 25, 3, 18, 9]
    for weight in (0.0, 1e-3, 1e-2, 1e9):
        rows = rows_for(lengths, weight)
        assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert rows_for(lengths, 0.0) == [[0, 3, 5, 2, 6, 1, 4]]  # no attention cost: the fewest tokens
    # attention dear: the narrowest rows, first-fit by decreasing length into width 30 (30 | 25+3 | 18+12 | 9+7)
    assert rows_for(lengths, 1e9) == [[0], [3, 4], [5, 2], [6, 1]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("weight", [0.0, 0.01, 1e9], ids=["one-row", "some-rows", "row-per-pair"])
def test_packed_equals_plain_logps_and_gradients(tiny_policy, dtype, attn, weight):
    model = load_model(tiny_policy).to(dtype)
    model.config._attn_implementation = attn
    assert supports(model, PAIRS)
    assert_same(model, lambda: packed_logps(model, pack(PAIRS, 0, weight)))


def _family(model_type: str, **extra):
    import transformers

    names = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}[model_type]
    config = getattr(transformers, f"{names}Config")(
        vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, **extra)
    torch.manual_seed(0)
    return getattr(transformers, f"{names}ForCausalLM")(config).float()


@pytest.mark.parametrize("model_type", ["mistral", "qwen2", "qwen3"])
def test_every_packed_family_matches_the_plain_path(model_type):
    extra = {"sliding_window": None} if model_type == "mistral" else {}
    model = _family(model_type, **extra)
    assert supports(model, PAIRS)
    assert_same(model, lambda: packed_logps(model, pack(PAIRS, 0, 0.01)))


def test_lora_wrapped_policy_takes_the_packed_path_alike(tiny_policy):
    from optune.config.run import LoraConfig
    from optune.models import lora

    pytest.importorskip("peft")
    model = lora.attach(load_model(tiny_policy), LoraConfig(r=4))
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at 0, which would leave A without gradient
            torch.nn.init.normal_(p, std=0.1)
    assert supports(model, PAIRS)
    assert_same(model, lambda: torch.cat(pair_logps(model, PAIRS, 0, False, packing=True)))
    with lora.adapter_disabled(model):
        assert supports(model, PAIRS)


def test_models_the_packed_path_cannot_serve_take_the_plain_path(tiny_policy):
    model = load_model(tiny_policy)
    assert supports(model, PAIRS)

    class Wrapper(torch.nn.Module):  # like DDP: its own forward must run, no get_decoder
        def __init__(self, m):
            super().__init__()
            self.module = m

    assert not supports(Wrapper(model), PAIRS)
    for key, value in (("_attn_implementation", "flash_attention_2"), ("final_logit_softcapping", 30.0),
                       ("model_type", "gemma2")):
        other = copy.deepcopy(model)
        setattr(other.config, key, value)
        assert not supports(other, PAIRS), key
    short = max(len(p.prompt_ids) + max(len(p.chosen.ids), len(p.rejected.ids)) for p in PAIRS) - 1
    assert not supports(_family("mistral", sliding_window=short), PAIRS)
    assert supports(_family("mistral", sliding_window=short + 1), PAIRS)
    assert supports(_family("qwen2", sliding_window=4, use_sliding_window=False), PAIRS)


def test_pair_logps_and_reference_logps_take_either_path_alike(tiny_policy):
    model = load_model(tiny_policy)
    with torch.no_grad():
        fast = pair_logps(model, PAIRS, 0, False, packing=True)
        slow = pair_logps(model, PAIRS, 0, False, packing=False)
    for a, b in zip(fast, slow):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    ref_fast = reference_logps(model, PAIRS, 0, 4, False, packing=True)
    ref_slow = reference_logps(model, PAIRS, 0, 4, False, packing=False)
    assert torch.allclose(torch.tensor(ref_fast), torch.tensor(ref_slow), rtol=1e-5, atol=1e-5)
    assert torch.allclose(torch.tensor(ref_fast[0]), slow[0], rtol=1e-5, atol=1e-5)


def test_bf16_autocast_runs_on_the_packed_path_and_stays_close(tiny_policy):
    model = load_model(tiny_policy)
    for attn in ("sdpa", "eager"):
        model.config._attn_implementation = attn
        with torch.no_grad():
            fast = torch.cat(pair_logps(model, PAIRS, 0, True, packing=True))
            want = torch.cat(pair_logps(model, PAIRS, 0, False, packing=False))
        assert torch.isfinite(fast).all()
        assert torch.allclose(fast, want, rtol=2e-2, atol=0.1), (attn, (fast - want).abs().max())


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_training_step_is_the_same_with_and_without_packing(tiny_policy, checkpointing):
    base = load_model(tiny_policy)
    ref = reference_logps(base, PAIRS, 0, 4, False, packing=False)
    models = []
    for packing in (False, True):
        model = copy.deepcopy(base)
        cfg = TrainConfig(optimizer="sgd", lr=1.0, warmup_ratio=0.0, lr_schedule="constant", batch_size=5,
                          grad_accum=2, epochs=1, max_grad_norm=None, packing=packing, save_steps=0, bf16=False,
                          gradient_checkpointing=checkpointing and packing)
        train_iteration(model, TrainInputs(PAIRS, References.of(*ref), 0, seed=1), cfg, make_loss("wdpo", 0.5, 2.0))
        models.append(model)
    moved = False
    for (name, a), b, c in zip(models[0].named_parameters(), models[1].parameters(), base.parameters()):
        delta_plain, delta_packed = a.detach() - c.detach(), b.detach() - c.detach()
        assert (delta_packed - delta_plain).norm() <= 1e-5 * delta_plain.norm() + 1e-7, name
        moved |= bool(delta_plain.norm() > 0)
    assert moved
