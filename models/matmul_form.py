"""Scoring a few rows against a large matrix, x @ W^T, in whichever of two equal forms runs faster here.

Decoding scores a handful of hidden states (batch x 1 token) against the 50304-row vocabulary. On
some CPUs that skinny product is several times faster written the other way round: measured with
torch 2.13's MKL on an AVX2 AMD EPYC, 3 x 256 states against the 50304 x 256 vocabulary took 32.5 ms
as x @ W^T (and as F.linear) but 5.8 ms as (W @ x^T)^T; on an AVX-512 Intel machine the first form
was the faster. Both forms compute the same numbers, so `skinny_matmul` times both once per process
for each shape in use (shapes are fixed while generating), caches the choice, and uses the faster.

Only CPU products of at most SKINNY_ROWS rows are timed; everything else (training, GPUs, code being
compiled) takes the plain form.
"""

import contextlib
import time
from collections.abc import Iterator

import torch

PLAIN, TRANSPOSED = "x @ W.T", "(W @ x.T).T"
FORMS = (PLAIN, TRANSPOSED)
SKINNY_ROWS = 16  # "a few rows": a decoding step's batch, not a training micro-batch
TIMING_REPEATS = 3  # each form's time is its fastest of this many calls, after one warm-up call

chosen: dict[tuple, str] = {}  # shape key -> the faster form, measured once per process
timings: dict[tuple, dict[str, float]] = {}  # shape key -> {form: seconds per call}, for bench.py
_forced: str | None = None


def multiply(x: torch.Tensor, weight: torch.Tensor, form: str) -> torch.Tensor:
    """x (..., C) @ weight (N, C)^T -> (..., N), computed in the given form."""
    if form == PLAIN:
        return x @ weight.t()
    rows = x.reshape(-1, x.size(-1))  # (R, C)
    return (weight @ rows.t()).t().reshape(*x.shape[:-1], weight.size(0))  # (N, R) -> (R, N), a view


def time_forms(x: torch.Tensor, weight: torch.Tensor, repeats: int = TIMING_REPEATS) -> dict[str, float]:
    """Seconds per call of each form for these operands: the fastest of `repeats` calls each."""
    best = {}
    with torch.no_grad():
        for form in FORMS:
            multiply(x, weight, form)  # warm-up: first-call allocations and library dispatch
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                multiply(x, weight, form)
                times.append(time.perf_counter() - start)
            best[form] = min(times)
    return best


def shape_key(x: torch.Tensor, weight: torch.Tensor) -> tuple:
    rows = x.numel() // x.size(-1)
    return (rows, x.size(-1), tuple(weight.shape), weight.stride(), x.dtype, weight.dtype, x.device.type,
            torch.is_autocast_enabled("cpu"), torch.get_num_threads())


def skinny_matmul(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (..., C) @ weight (N, C)^T, in the form measured fastest for this shape on this machine."""
    rows = x.numel() // x.size(-1)
    if rows > SKINNY_ROWS or x.device.type != "cpu" or torch.compiler.is_compiling():
        return x @ weight.t()
    if _forced is not None:
        return multiply(x, weight, _forced)
    key = shape_key(x, weight)
    if key not in chosen:
        timings[key] = time_forms(x.detach(), weight.detach())
        chosen[key] = min(timings[key], key=timings[key].get)
    return multiply(x, weight, chosen[key])


@contextlib.contextmanager
def forced_form(form: str | None) -> Iterator[None]:
    """Within the block every skinny product takes `form` (None: the measured choice); for tests
    and for bench.py's comparison of the two."""
    global _forced
    if form is not None and form not in FORMS:
        raise ValueError(f"unknown form {form!r}; valid: {FORMS}")
    previous, _forced = _forced, form
    try:
        yield
    finally:
        _forced = previous
