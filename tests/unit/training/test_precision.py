"""optune.training.precision: where bf16 autocast pays, read from the CPU's flags."""

from optune.training.precision import bf16_pays, cpu_flags

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
bugs\t\t: sysret_ss_attrs

processor\t: 1
flags\t\t: fpu
"""


def test_cpu_flags_reads_the_first_flags_line():
    assert cpu_flags(CPUINFO) == {"fpu", "sse2", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
    assert cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}  # arm64's name for the line
    assert cpu_flags("model name: x\n") == set()


def test_bf16_pays_on_amx_or_avx512_bf16_only():
    assert bf16_pays("cpu", {"avx2", "amx_bf16", "amx_tile"}) == (True, "CPU has amx_bf16")
    assert bf16_pays("cpu", {"avx2", "avx512_bf16"}) == (True, "CPU has avx512_bf16")
    assert bf16_pays("cpu", {"avx2", "avx512f"}) == (False, "CPU has no amx_bf16 or avx512_bf16")
    assert bf16_pays("mps", {"avx512_bf16"})[0] is False
