"""One iteration of the embedded default run on a GPU, for throughput and memory (run by gpu_check.sh).

The GPU machine has no network and only small files travel with the repository, so the 98 MB embedded
model cannot come along: the SmolLM2-135M architecture is built from its config with random weights, and
responses are forced to a fixed length (generation.min_new_tokens = max_new_tokens) so tokens/s does not
depend on when a random model happens to emit EOS. A random model's responses all get the same
verifiable reward, so ties are kept (loss.drop_ties=false) to train on every pair, as a real run would.

Prints generation tokens/s, training tokens/s and peak GPU memory; writes them to OUT/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from optune.store import RunStore, read_json, read_jsonl

# SmolLM2-135M-Instruct's architecture (its config.json)
SMOLLM2_135M = {
    "vocab_size": 49152, "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "max_position_embeddings": 8192, "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
    "pad_token_id": 0,
}


def padded_tokenizer(vocab_size: int):
    """optune's tiny byte-level ChatML tokenizer, its vocabulary filled to vocab_size with two-byte tokens so
    every id a random model samples decodes to text (encoding still yields single bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from optune.models.tiny import CHATML, SPECIALS

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in alphabet:
        vocab[ch] = len(vocab)
    for a in alphabet:
        for b in alphabet:
            if len(vocab) >= vocab_size:
                break
            vocab[a + b] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|pad|>", eos_token="<|im_end|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = CHATML
    return tok


def build_model(out: Path, layers: int | None) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    arch = {**SMOLLM2_135M, **({"num_hidden_layers": layers} if layers else {})}
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**arch))
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 0
    model.save_pretrained(out, safe_serialization=True)
    padded_tokenizer(arch["vocab_size"]).save_pretrained(out)
    return out


def token_counts(run: Path, epochs: int) -> tuple[int, int]:
    """(response tokens generated, response tokens trained on: chosen + rejected of every pair, x epochs).

    Training tokens/s divides the latter by the training time, which also holds the reference forward pass
    and the checkpoint save; prompt tokens go through the forward pass too but are not counted.
    """
    store = RunStore(run)
    generated = sum(len(s["ids"]) for f in store.gen_dir(0).iterdir() for line in f.read_text().splitlines()
                    for s in json.loads(line)["samples"])
    responses = {json.loads(line)["prompt_id"]: json.loads(line) for line in
                 store.responses(0).read_text().splitlines()}
    trained = read_jsonl(store.pairs(0))
    return generated, sum(len(r["ids"]) for p in trained if p["trained"]
                          for r in responses[p["prompt_id"]]["responses"]) * epochs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="gpu_check_out", help="folder for the model, run and results")
    parser.add_argument("--cpu-smoke", action="store_true", help="2 layers, 8 prompts, 8 tokens, on the CPU")
    args = parser.parse_args(argv)
    import torch
    import yaml

    from optune.cli import main as optune_main

    cuda = torch.cuda.is_available()
    if not cuda and not args.cpu_smoke:
        print("gpu_check: no CUDA device; use --cpu-smoke for a CPU smoke test", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model_dir = build_model(out / "smollm2-135m-random", 2 if args.cpu_smoke else None)
    run = out / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    new_tokens = 8 if args.cpu_smoke else 64  # the default run's max_new_tokens is 64
    overrides = [f"output_dir={run}", f"policy.model={model_dir}", "policy.dtype=bfloat16", "iterations=1",
                 f"generation.max_new_tokens={new_tokens}", f"generation.min_new_tokens={new_tokens}",
                 "loss.drop_ties=false", "eval.heldout=false"] + (["data.max_prompts=8"] if args.cpu_smoke else [])
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    code = optune_main(["run", *overrides])
    wall = time.perf_counter() - start
    if code != 0:
        return code
    store = RunStore(run)
    metrics = read_json(store.metrics(0))
    epochs = yaml.safe_load(store.config.read_text())["train"]["epochs"]
    generated, trained = token_counts(run, epochs)
    result = {
        "device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
        "torch": torch.__version__, "cpu_smoke": args.cpu_smoke, "prompts": metrics["selection/n_regenerated"],
        "generation_s": metrics["time/generation_s"], "training_s": metrics["time/training_s"],
        "generated_tokens": generated, "generation_tokens_per_s": generated / metrics["time/generation_s"],
        "training_tokens": trained, "training_tokens_per_s": trained / metrics["time/training_s"],
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        "peak_gpu_reserved_gib": torch.cuda.max_memory_reserved() / 2**30 if cuda else None,
        "wall_s": wall,
    }
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    for key, value in result.items():
        print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
