"""Whether training computes in bfloat16: `train.bf16` "auto" resolved once, when a run starts.

bf16 autocast keeps float32 master weights and optimizer state and runs the matmuls in bfloat16. It pays
where the hardware has bf16 matrix units: a CUDA GPU that supports bf16, or a CPU with AMX (amx_bf16,
bf16 matmul ~3.9x float32) or AVX-512 BF16 (avx512_bf16, ~2.5x). Elsewhere (AVX2 only) bf16 is emulated
and slower, so "auto" keeps float32. The choice is resolved before the run directory is written, so
config.yaml holds true or false and a resumed run keeps it on any machine.
"""

from __future__ import annotations

from pathlib import Path

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo's first "flags" line); empty where there is none."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        try:
            cpuinfo = path.read_text(errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def bf16_pays(device: str, flags: set[str] | None = None) -> tuple[bool, str]:
    """(use bf16 autocast, why) for training on `device` ("cpu" or "cuda:N")."""
    if device.startswith("cuda"):
        import torch

        ok = torch.cuda.is_bf16_supported()
        return ok, f"{'a' if ok else 'no'} bf16-capable GPU"
    if not device.startswith("cpu"):
        return False, f"device {device}: bf16 not measured there"
    found = [f for f in BF16_CPU_FLAGS if f in (cpu_flags() if flags is None else flags)]
    return (True, f"CPU has {found[0]}") if found else (False, "CPU has no amx_bf16 or avx512_bf16")
