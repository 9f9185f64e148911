#!/usr/bin/env bash
# Two parts, each printing its results as it goes:
# 1. gpu_check.py: one iteration of the embedded default run's settings in bf16 on a GPU with the
#    transformers backend: generation tokens/s, training tokens/s, peak GPU memory (OUT/gpu_check.json).
# 2. gpu_steady.py: steady-state generation and training tokens/s and model-FLOPs utilisation of the
#    SmolLM2-135M and SmolLM2-1.7B architectures against the GPU's measured bf16 matmul rate
#    (OUT/gpu_steady.json).
#
# For a GPU machine without network whose Python has torch, transformers and accelerate (vLLM not needed).
# The architectures are built with random weights (the model files do not travel) and responses are
# forced to 64 tokens. Time limits: 110 s for part 1 (it took 36 s on an H100), 420 s for part 2 (which
# keeps its own budgets inside 400 s): under 9 minutes in all.
#
#   benchmarks/gpu_check.sh [OUT_DIR]                  # on the GPU machine: both parts
#   benchmarks/gpu_check.sh --steady-only [OUT_DIR]    # part 2 only
#   benchmarks/gpu_check.sh --cpu-smoke [OUT_DIR]      # CPU smoke test of the same paths (tiny models)
#
# Record the printed lines in docs/benchmarks.md with the date and the machine.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
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
steady_only=false
if [[ "${1:-}" == "--steady-only" ]]; then
    steady_only=true
    shift
fi
if ! $steady_only; then
    timeout 110 python benchmarks/gpu_check.py "$@" || echo "gpu_check.py exited with status $?; going on"
fi
exec timeout 420 python benchmarks/gpu_steady.py "$@"
