#!/usr/bin/env bash
# One iteration of the embedded default run's settings in bf16 on a GPU with the transformers backend:
# prints generation tokens/s, training tokens/s and peak GPU memory (and writes OUT/gpu_check.json).
#
# For a GPU machine without network whose Python has torch, transformers and accelerate (vLLM not needed).
# The SmolLM2-135M architecture is built with random weights (the 98 MB model file does not travel) and
# responses are forced to 64 tokens. Budget: well under 10 minutes on an H100/H200.
#
#   benchmarks/gpu_check.sh [OUT_DIR]                # on the GPU machine
#   benchmarks/gpu_check.sh --cpu-smoke [OUT_DIR]    # CPU smoke test of the same path (2 layers, 8 prompts)
#
# Record the printed lines in docs/benchmarks.md with the date and the machine.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
cd "$repo"
python - <<'PY'
import torch, transformers, accelerate
print(f"torch {torch.__version__} | transformers {transformers.__version__} | accelerate {accelerate.__version__}")
if torch.cuda.is_available():
    print("gpu:", torch.cuda.get_device_name(0), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
PY
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.used,memory.total,utilization.gpu --format=csv,noheader || true
fi
exec timeout 540 python benchmarks/gpu_check.py "$@"
