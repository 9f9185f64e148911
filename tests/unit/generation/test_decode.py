"""optune's decode loop against the plain paths: model.generate (greedy), a forward pass (sampled tokens and
their log-probs), the full sort (prefilter), on a tiny random Llama with peaked next-token distributions."""

import pytest
import torch

from optune.config.run import GenerationConfig
from optune.errors import UserError
from optune.generation import TransformersGenerator, encode_prompt
from optune.generation.decode import DecodeSettings, decode
from optune.generation.sampling import sample_top_p
from optune.models.policy import load_model, load_tokenizer
from optune.pairs import Pair
from optune.prompt import Prompt
from optune.training.logps import pair_logps, responses_logps

EOS = 2
TEXTS = ("hi", "a longer prompt here", "x", "another one, of a middling length")


@pytest.fixture(scope="module")
def peaked(tiny_policy):
    """The tiny policy with larger random weights (nuclei of ~60-110 of 259 tokens, distinct greedy paths)
    and a larger EOS embedding, so that some responses end with EOS within a few tokens and some do not."""
    tok, model = load_tokenizer(tiny_policy), load_model(tiny_policy)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p.dim() == 1 else 0.0))
        model.model.embed_tokens.weight[EOS] *= 2.5
    prompts = [encode_prompt(tok, Prompt("p", t), 64) for t in TEXTS]
    return tok, model, prompts


def run(model, prompts, n=2, seed=0, **settings):
    settings = DecodeSettings(**{"max_new_tokens": 10, **settings})
    return decode(model, prompts, n, pad_id=0, stop=[EOS], settings=settings, seed=seed)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("min_new", [0, 6])
def test_greedy_matches_model_generate(peaked, attention, min_new):
    tok, model, prompts = peaked
    model.set_attn_implementation(attention)
    try:
        out = {}
        for impl in ("generate", "decode"):
            gen = TransformersGenerator(GenerationConfig(max_new_tokens=12, min_new_tokens=min_new, impl=impl), tok)
            out[impl] = [[(s.ids, s.eos) for s in samples]
                         for samples in gen.generate(model, prompts, n=2, greedy=True)]
    finally:
        model.set_attn_implementation("sdpa")
    assert out["decode"] == out["generate"]
    assert len({tuple(ids) for samples in out["decode"] for ids, _ in samples}) == len(prompts)
    if min_new == 0:
        assert any(eos for samples in out["decode"] for _, eos in samples)


def replay(model, prompts, out, n, seed, temperature, top_p, min_new):
    """Every sampled token recomputed from a forward pass over its own unpadded sequence, with the uniform
    the decode loop drew for it (one per row per step from the seeded generator), by the full-sort rule."""
    gen = torch.Generator().manual_seed(seed)
    uniforms = torch.stack([torch.rand(len(out), generator=gen) for _ in range(max(len(d.tokens) for d in out))])
    for row, d in enumerate(out):
        prompt = prompts[row // n]
        with torch.no_grad():
            logits = model(torch.tensor([prompt + d.tokens])).logits[0, len(prompt) - 1:-1].float()
        logits[:min_new, EOS] = float("-inf")
        probs = (logits / temperature).softmax(-1)
        expected = sample_top_p(probs, top_p, uniforms[:len(d.tokens), row], prefilter=())
        assert expected.tolist() == d.tokens, row


@pytest.mark.parametrize("temperature,top_p,min_new", [(1.0, 0.9, 0), (0.7, 0.8, 4), (1.3, 1.0, 0)])
def test_sampled_tokens_are_the_top_p_rule_applied_to_a_forward_pass(peaked, temperature, top_p, min_new):
    _, model, prompts = peaked
    out = run(model, prompts, n=2, seed=5, temperature=temperature, top_p=top_p, min_new_tokens=min_new)
    replay(model, prompts, out, 2, 5, temperature, top_p, min_new)
    assert all(len(d.tokens) >= min_new for d in out)


def test_prefilter_does_not_change_the_samples(peaked):
    _, model, prompts = peaked
    full = run(model, prompts, seed=3, top_p=0.9, prefilter=())
    for stages in ((4,), (64,), (100,), (64, 100), (256,)):  # nuclei hold ~60-110 tokens: some rows fall back
        assert [d.tokens for d in run(model, prompts, seed=3, top_p=0.9, prefilter=stages)] == [d.tokens for d in full]


def test_packed_linears_give_the_same_tokens(peaked):
    _, model, prompts = peaked
    for settings in (dict(greedy=True), dict(top_p=0.9), dict(top_p=0.8, temperature=0.7, min_new_tokens=3)):
        packed, plain = run(model, prompts, seed=4, **settings), run(model, prompts, seed=4, packed=False, **settings)
        assert [d.tokens for d in packed] == [d.tokens for d in plain]
        assert max(abs(a.logp - b.logp) for a, b in zip(packed, plain)) < 1e-5


def test_seeded_and_deterministic(peaked):
    _, model, prompts = peaked
    a, b, c = (run(model, prompts, seed=s, top_p=0.9) for s in (7, 7, 8))
    assert [d.tokens for d in a] == [d.tokens for d in b] != [d.tokens for d in c]
    assert [d.logp for d in a] == [d.logp for d in b]


def test_logp_equals_a_float32_forward_pass(peaked):
    """Each response's summed raw log-prob (EOS included, nothing after it) equals training's forward pass."""
    tok, model, prompts = peaked
    config = GenerationConfig(max_new_tokens=10, temperature=0.7, top_p=0.8, impl="decode", sampler_logprobs=True)
    gen = TransformersGenerator(config, tok)
    out = gen.generate(model, prompts, n=2, seed=11)
    samples = [s for pair in out for s in pair]
    assert any(s.eos and len(s.ids) < 10 for s in samples) and any(not s.eos for s in samples)
    pairs = [Pair.of(p, a.ids, b.ids) for p, (a, b) in zip(prompts, out)]
    chosen, rejected = pair_logps(model, pairs, tok.pad_token_id, bf16=False)
    for (a, b), c, r in zip(out, chosen.tolist(), rejected.tolist()):
        assert abs(a.logp - c) < 1e-4 and abs(b.logp - r) < 1e-4, (a.logp, c, b.logp, r)


def test_greedy_logp_equals_the_heldout_forward_pass(peaked):
    """The held-out KL (optune.runner.heldout.movement) takes the policy's log-probs from greedy generation with the
    default (packed) settings instead of responses_logps' forward pass: the two agree."""
    tok, model, prompts = peaked
    gen = TransformersGenerator(GenerationConfig(max_new_tokens=10, impl="decode"), tok)
    out = [pair[0] for pair in gen.generate(model, prompts, n=1, greedy=True, seed=0)]
    forward = responses_logps(model, prompts, [s.ids for s in out], tok.pad_token_id, batch_size=3)
    assert max(abs(s.logp - f) for s, f in zip(out, forward)) < 1e-4
    # under bf16 autocast (the other policies' passes where training is bf16): close, not equal
    half = responses_logps(model, prompts, [s.ids for s in out], tok.pad_token_id, batch_size=3, bf16=True)
    assert half != forward and max(abs(h - f) / abs(f) for h, f in zip(half, forward)) < 0.05


def test_checkpoint_processors_send_decode_to_model_generate(peaked, capsys):
    tok, model, prompts = peaked
    model.generation_config.repetition_penalty = 1.3
    try:
        gen = TransformersGenerator(GenerationConfig(max_new_tokens=4, impl="decode"), tok)
        out = [gen.generate(model, prompts, n=2, seed=0) for _ in range(2)]
        plain = TransformersGenerator(GenerationConfig(max_new_tokens=4, impl="generate"), tok)
        expected = plain.generate(model, prompts, n=2, seed=0)
        assert [[s.ids for s in p] for p in out[1]] == [[s.ids for s in p] for p in expected]
        assert all(s.logp is None for p in out[0] for s in p)
        assert capsys.readouterr().err.count("repetition_penalty=1.3; generating with model.generate") == 1
        with pytest.raises(UserError, match="repetition_penalty=1.3.*sampler_logprobs=false"):
            TransformersGenerator(GenerationConfig(max_new_tokens=4, impl="decode", sampler_logprobs=True),
                                  tok).generate(model, prompts, n=2, seed=0)
    finally:
        model.generation_config.repetition_penalty = None
