"""The device a run uses (and whether this machine has the one a config names), its precision,
and its peak FLOP/s for MFU.

MFU (model FLOPs utilization) = achieved model FLOP/s / the device's peak, as in nanoGPT and
the PaLM paper. On GPUs the peak comes from the vendor's dense tensor-core figure for the dtype.
On CPU it is the cores' theoretical fp32 rate, which no background load can lower:

    peak = cores used x clock x FMA units per core (2) x fp32 lanes per vector x 2 FLOP per FMA

with 16 lanes for AVX-512, 8 for AVX2 (from /proc/cpuinfo's flags), cores used = torch's threads
bounded by the physical cores, and the clock from cpufreq's maximum or else /proc/cpuinfo's MHz
(a VM lists its base clock; turbo can beat it, so the peak may be underestimated: MFU is then
shown as ">=100%"). Where the flags cannot be read (not x86 Linux), a large fp32 matmul is timed
once instead, which a busy machine slows down.
"""

import contextlib
import ctypes
import functools
import re
import sys
import time
from pathlib import Path

import torch

# Dense (no sparsity) peak FLOP/s by GPU name fragment and dtype, from the vendors' data sheets.
GPU_PEAK_FLOPS = {
    "T4": {"float16": 65e12, "float32": 8.1e12},
    "V100": {"float16": 125e12, "float32": 15.7e12},
    "A10G": {"bfloat16": 70e12, "float16": 70e12, "float32": 31.2e12},
    "A100": {"bfloat16": 312e12, "float16": 312e12, "float32": 19.5e12},
    "L4": {"bfloat16": 121e12, "float16": 121e12, "float32": 30.3e12},
    "H100": {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12},
    "H200": {"bfloat16": 989e12, "float16": 989e12, "float32": 67e12},
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"  # the forms the `device` key takes
DEVICE_FORMS = "auto, cpu, cuda, cuda:N or mps"


def device_unavailable(device: str) -> str | None:
    """Why this machine cannot run on `device`, or None if it can ('auto' always can)."""
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            return f"torch sees {count} CUDA device{'s' if count != 1 else ''}"
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return "torch sees no MPS device"
    return None


def resolve_device(device: str) -> str:
    """'auto' picks cuda, then mps, then cpu."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> str:
    """'auto' means bf16 where the GPU supports it, fp16 (with a GradScaler) where it does not
    (Tesla T4, V100), and fp32 on CPU, where autocast buys nothing."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def autocast(device: str, dtype: str):
    """Mixed-precision context for forward passes; a no-op in fp32."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=DTYPES[dtype])


FMA_UNITS_PER_CORE = 2  # Intel server cores since Skylake-SP, AMD since Zen 2: an upper bound
FP32_LANES = {"avx512f": 16, "avx2": 8, "sse2": 4}  # fp32 numbers in one vector register


def peak_flops(device: str, dtype: str) -> float:
    """Peak FLOP/s of this device at this dtype (see peak_flops_and_source)."""
    return peak_flops_and_source(device, dtype)[0]


def peak_flops_and_source(device: str, dtype: str) -> tuple[float, str]:
    """Peak FLOP/s of this device at this dtype, and where it comes from, in a few words."""
    if device.startswith("cuda"):
        name = torch.cuda.get_device_name(torch.device(device))
        for fragment, peaks in GPU_PEAK_FLOPS.items():
            if fragment in name:
                return peaks.get(dtype, peaks["float32"]), f"{name} data sheet"
        raise ValueError(f"no peak FLOP/s known for {name}; add it to GPU_PEAK_FLOPS")
    theoretical = theoretical_cpu_flops(torch.get_num_threads())
    if theoretical is not None:
        return theoretical
    return measured_cpu_matmul_flops(), "fp32 matmul measured at start-up"


def theoretical_cpu_flops(threads: int, cpuinfo: str | None = None,
                          max_khz: int | None = None) -> tuple[float, str] | None:
    """The cores' theoretical fp32 FLOP/s (module docstring) and its formula; None if unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return None
        max_khz = cpufreq_max_khz()
    flags_line = re.search(r"^flags\s*:(.*)$", cpuinfo, re.MULTILINE)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    lanes = next((n for flag, n in FP32_LANES.items() if flag in flags), None)
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.MULTILINE)]
    cores = set(re.findall(r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", cpuinfo, re.DOTALL))
    if lanes is None or not (mhz or max_khz):
        return None
    ghz = max_khz / 1e6 if max_khz else max(mhz) / 1e3
    used = min(threads, len(cores) or len(mhz))
    flops = used * ghz * 1e9 * FMA_UNITS_PER_CORE * lanes * 2
    return flops, (f"theoretical fp32 peak: {used} core{'s' if used > 1 else ''} x {ghz:.2f} GHz x "
                   f"{FMA_UNITS_PER_CORE} FMA x {lanes} lanes x 2")


def cpufreq_max_khz() -> int | None:
    try:
        return int(Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text())
    except (OSError, ValueError):
        return None


@functools.lru_cache(maxsize=1)
def measured_cpu_matmul_flops(size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a large fp32 matmul on this CPU with the current thread count: the practical
    peak a training step could reach."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):  # warm up the thread pool and caches
        a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def keep_freed_memory() -> bool:
    """CPU speed trick: serve big buffers from the heap and keep freed memory for reuse (glibc).

    A training step frees and reallocates the same big buffers every step (at the Shakespeare size
    the (B*T, V) logits, their log-softmax and their gradient are ~400 MB each). glibc returns
    blocks that big to the OS on free, so each step page-faults ~1.8 GB back in, zero-filled by
    the kernel (~450k faults): measured at 1 thread, 2.45 -> 1.85 CPU-seconds per step. The cost is
    memory: the process keeps its buffers (peak RSS 3.8 GB instead of 2.4 GB at that size).
    Call it before the first big allocation. Returns whether it applied (Linux with glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl): nothing to tune
        return False
    M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # mallopt parameter numbers from glibc's malloc.h
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
