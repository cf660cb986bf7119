"""MFU's denominator: the CPU's theoretical peak from its flags and clock, and the 100% ceiling."""

import pytest

from core.hardware import theoretical_cpu_flops
from training.run_log import format_mfu

CPUINFO = "".join(
    f"processor\t: {i}\nphysical id\t: 0\ncore id\t\t: {i // 2}\ncpu MHz\t\t: 2600.000\n"
    f"flags\t\t: fpu sse2 avx fma avx2{' avx512f avx512bw' if avx512 else ''}\n\n"
    for avx512 in [True] for i in range(4))  # 4 hyperthreads on 2 physical cores


def test_theoretical_peak_from_flags_cores_and_clock():
    flops, formula = theoretical_cpu_flops(8, CPUINFO)
    assert flops == pytest.approx(2 * 2.6e9 * 2 * 16 * 2)  # the siblings share their core's FMA units
    assert formula == "theoretical fp32 peak: 2 cores x 2.60 GHz x 2 FMA x 16 lanes x 2"
    flops, _ = theoretical_cpu_flops(1, CPUINFO.replace(" avx512f avx512bw", ""), max_khz=3_500_000)
    assert flops == pytest.approx(1 * 3.5e9 * 2 * 8 * 2)  # AVX2, one thread, cpufreq's turbo clock
    assert theoretical_cpu_flops(2, "processor\t: 0\n") is None  # no flags: measured instead


def test_mfu_is_never_printed_above_100_percent():
    assert format_mfu(0.418) == "41.8%"
    assert format_mfu(1.07) == ">=100% (peak underestimated)"
    assert format_mfu(None) == "n/a"
