import pytest

from optune.config.run import GenerationConfig
from optune.generation import TransformersGenerator, encode_prompt, left_pad, make_generator, split_response
from optune.models.policy import load_model, load_tokenizer
from optune.prompt import Prompt


def test_split_response_keeps_eos():
    assert split_response([5, 6, 2, 0, 0], {2}) == ([5, 6, 2], True)
    assert split_response([5, 6, 7], {2}) == ([5, 6, 7], False)
    assert split_response([], {2}) == ([], False)


def test_left_pad():
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_auto_on_a_cpu_draws_what_decode_draws(tiny_policy):
    """generation.impl's default "auto" computes on a CPU exactly what the former default "decode" did."""
    tok, model = load_tokenizer(tiny_policy), load_model(tiny_policy)
    prompts = [encode_prompt(tok, Prompt("p", p), 64) for p in ("hi", "a longer prompt here")]
    draws = {impl: TransformersGenerator(GenerationConfig(max_new_tokens=8, impl=impl), tok).generate(
        model, prompts, n=2, seed=3) for impl in ("auto", "decode")}
    assert [[(s.ids, s.logp) for s in o] for o in draws["auto"]] == [[(s.ids, s.logp) for s in o]
                                                                     for o in draws["decode"]]
    assert all(s.logp is not None for o in draws["auto"] for s in o)  # the decode loop's, not model.generate's


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["decode", "generate"])
def test_generate_two_samples_per_prompt(tiny_policy, impl):
    tok, model = load_tokenizer(tiny_policy), load_model(tiny_policy)
    assert tok.padding_side == "left"
    prompts = [encode_prompt(tok, Prompt("p", p), 64) for p in ("hi", "a longer prompt here")]
    gen = TransformersGenerator(GenerationConfig(max_new_tokens=8, impl=impl), tok)
    out = gen.generate(model, prompts, n=2, seed=0)
    assert [len(o) for o in out] == [2, 2]
    for samples in out:
        for s in samples:
            assert 1 <= len(s.ids) <= 8
            assert s.eos == (s.ids[-1] == tok.eos_token_id)
            assert (s.logp is None) == (impl == "generate")
    again = gen.generate(model, prompts, n=2, seed=0)
    assert [[s.ids for s in o] for o in out] == [[s.ids for s in o] for o in again]
    greedy = gen.generate(model, prompts, n=1, greedy=True)
    assert greedy[0][0].ids == gen.generate(model, prompts[:1], n=1, greedy=True)[0][0].ids


def test_prompt_truncation_keeps_the_end(tiny_policy):
    tok = load_tokenizer(tiny_policy)
    full = encode_prompt(tok, Prompt("p", "x" * 50), 1000)
    assert encode_prompt(tok, Prompt("p", "x" * 50), 10) == full[-10:]


def test_unknown_backend(tiny_policy):
    with pytest.raises(ValueError, match="GenerationBackend"):  # configs are checked as they load
        make_generator(GenerationConfig(backend="nope"), None)


@pytest.mark.parametrize("impl", ["decode", "generate"])
def test_min_new_tokens_forces_the_length(tiny_policy, impl):
    tok, model = load_tokenizer(tiny_policy), load_model(tiny_policy)
    prompts = [encode_prompt(tok, Prompt("p", "hi"), 64)]
    gen = TransformersGenerator(GenerationConfig(max_new_tokens=6, min_new_tokens=6, impl=impl), tok)
    out = gen.generate(model, prompts, n=4, seed=1)
    assert all(len(s.ids) == 6 and tok.eos_token_id not in s.ids for s in out[0])


@pytest.mark.parametrize("sampler_logprobs", [False, True])
def test_sampler_logprobs_keep_the_training_kernels(tiny_policy, monkeypatch, sampler_logprobs):
    """Log-probs that serve as DPO references come from the same matmul kernels as training's forward."""
    from optune.generation import decode as decode_module

    seen = []
    real = decode_module.decode
    monkeypatch.setattr(decode_module, "decode", lambda *a, **k: seen.append(a[5].packed) or real(*a, **k))
    tok, model = load_tokenizer(tiny_policy), load_model(tiny_policy)
    config = GenerationConfig(max_new_tokens=3, impl="decode", sampler_logprobs=sampler_logprobs)
    TransformersGenerator(config, tok).generate(model, [encode_prompt(tok, Prompt("p", "hi"), 64)], n=2, seed=0)
    assert seen == [not sampler_logprobs]
