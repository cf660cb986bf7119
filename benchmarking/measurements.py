"""The measurements behind bench.py: training throughput, FLOP/s and MFU, peak memory, sampling speed.

How the numbers are taken, so that they can be trusted on a busy machine:
- Every model is built and warmed up first (torch.compile compiles during warm-up), then timed in
  interleaved rounds: each round runs `steps` training steps of every model in turn. A model's
  step time is the mean over its fastest round. Other processes can only make a round slower, so
  the fastest round is the closest to what the code does alone, and interleaving exposes every
  model to the same background load, which keeps the ratios between them fair.
- A training step is training.optimization.train_step, the code train.py runs, on random token ids of the
  config's shape (batch_size x block_size, gradient_accumulation_steps micro-batches).
- MFU = model FLOPs per token (model.flops_per_token: 6N plus attention, as nanoGPT counts them)
  x tokens/s / the device's peak: a GPU's data-sheet figure (core.hardware.peak_flops), or on CPU
  a 2048^3 fp32 matmul timed in the same rounds as the steps (PeakMatmul). On CPU the same ratio
  is also taken in process CPU-seconds (mfu_cpu_time): with one thread, other processes on the
  machine do not inflate it.
- Peak memory of a training step = parameters and optimizer state, plus the high-water mark of
  what one step allocates on top (activations, logits, gradients). GPU: torch.cuda's allocator
  counts; CPU: the process's resident memory high-water mark (Linux VmHWM, reset before the step,
  with freed heap memory returned to the OS first so that earlier models do not hide this one's).
- Skinny products (--matmul_forms): for every weight W (N, K) a decoding step multiplies by, a
  (num_samples, K) input times W^T in both forms of models/matmul_form.py, each the fastest of 20
  calls; a ratio plain/transposed above 1 means the transposed form is faster on this machine.
- Sampling speed: new tokens per second generating `new_tokens` tokens after a one-token prompt,
  with the key/value cache and with the whole context recomputed at every step, num_samples
  sequences in one batch as sample.py generates them.
"""

import contextlib
import ctypes
import gc
import re
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from core.config import Config
from core.hardware import autocast
from core.tokenizer import GPT2_VOCAB_SIZE, Tokenizer
from models import MODELS, build_model, matmul_form
from models.baselines import BASELINES, ReferenceGPT2
from training.batches import corpus_tokenizer
from training.optimization import make_grad_scaler, make_optimizer, train_step


def build_any(name: str, cfg: Config) -> nn.Module:
    """A fresh model from the registry (models/) or a baseline (models/baselines.py); with
    vocab='corpus', with as many token rows as train.py would give it on cfg's dataset."""
    model_config = cfg.model_config()
    if cfg.vocab == "corpus":
        model_config.vocab_size = corpus_tokenizer(Path(cfg.data_dir) / cfg.dataset).vocab_size
    if name in MODELS:
        return build_model(name, model_config)
    if name not in BASELINES:
        raise ValueError(f"unknown model {name!r}")
    model = BASELINES[name](model_config)
    if isinstance(model, ReferenceGPT2):  # same start as our gpt2, so both compute the same function
        model.load_state_dict(build_model("gpt2", model_config).state_dict())
    return model


class TrainingRun:
    """One model's optimizer, data and compiled forward, ready to take timed training steps."""

    def __init__(self, model: nn.Module, cfg: Config, device: str, dtype: str, seed: int = 0):
        self.model = model.to(device).train()
        self.cfg, self.device, self.dtype = cfg, device, dtype
        self.optimizer = make_optimizer(self.model, cfg, device)
        self.scaler = make_grad_scaler(device, dtype)
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        generator = torch.Generator().manual_seed(seed)
        shape = (cfg.batch_size, cfg.block_size + 1)
        vocab = min(self.model.config.vocab_size, GPT2_VOCAB_SIZE)  # drawn like real token ids
        self.micro_batches = []
        for _ in range(cfg.gradient_accumulation_steps):
            tokens = torch.randint(0, vocab, shape, generator=generator).to(device)
            self.micro_batches.append((tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()))

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.gradient_accumulation_steps * self.cfg.batch_size * self.cfg.block_size

    def step(self) -> float:
        return train_step(self.forward, self.optimizer, self.scaler, self.micro_batches,
                          lr=self.cfg.learning_rate, grad_clip=self.cfg.grad_clip,
                          device=self.device, dtype=self.dtype)

    def state_bytes(self) -> int:
        """Parameters and optimizer state: what stays allocated between steps."""
        tensors = list(self.model.parameters())
        for state in self.optimizer.state.values():
            tensors += [t for t in state.values() if torch.is_tensor(t)]
        return sum(t.numel() * t.element_size() for t in tensors)


def progress(message: str) -> None:
    """A line on stderr, so a long benchmark shows where it is without mixing into its output."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    wall_s: float  # seconds per call, the mean over the fastest round
    cpu_s: float  # CPU-seconds of this process per call, likewise (all threads together)


def time_interleaved(work: dict[str, Callable[[], object]], rounds: int, steps: int,
                     device: str) -> dict[str, Timing]:
    """Time per call of each function: the mean over its fastest of `rounds` rounds, each round
    calling every function `steps` times in turn.

    CPU time is kept beside wall time: with one thread it counts the work done whatever else runs
    on the machine, so it stays comparable when other processes share the cores."""
    best = {name: Timing(float("inf"), float("inf")) for name in work}
    for r in range(rounds):
        progress(f"training round {r + 1}/{rounds}")
        for name, fn in work.items():
            synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(steps):
                fn()
            synchronize(device)
            wall, cpu = (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps
            best[name] = Timing(min(best[name].wall_s, wall), min(best[name].cpu_s, cpu))
    return best


class PeakMatmul:
    """The CPU's practical peak, as core.hardware measures it (a 2048^3 fp32 matmul), timed in the
    same rounds as the training steps so that both see the same background load."""

    size = 2048
    repeats = 5

    def __init__(self):
        self.a, self.b = torch.randn(self.size, self.size), torch.randn(self.size, self.size)

    def __call__(self) -> None:
        for _ in range(self.repeats):
            self.a @ self.b

    @property
    def flops_per_call(self) -> float:
        return 2 * self.size**3 * self.repeats


# --- memory -------------------------------------------------------------------------------------
def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _release_free_heap() -> None:
    """Return freed heap memory to the OS (glibc), so the next high-water mark starts clean."""
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_cpu_high_water() -> bool:
    """Reset VmHWM to the current resident size (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def step_peak_memory(run: TrainingRun) -> int:
    """Bytes one training step needs at its peak: state_bytes plus what the step allocates on top.
    Where the CPU high-water mark cannot be reset, the process-wide peak RSS is returned instead."""
    device = run.device
    if device.startswith("cuda"):
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        run.step()
        synchronize(device)
        return run.state_bytes() + torch.cuda.max_memory_allocated(device) - before
    _release_free_heap()
    if not _reset_cpu_high_water() or _proc_status_kib("VmRSS") is None:
        run.step()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        return peak if sys.platform == "darwin" else peak * 1024
    before = _proc_status_kib("VmRSS")
    run.step()
    return run.state_bytes() + (_proc_status_kib("VmHWM") - before) * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


def cpu_heap_in_use() -> int | None:
    """Bytes malloc has handed out and not taken back (glibc's mallinfo2: heap plus mmapped blocks),
    the CPU allocator's own count; None where glibc >= 2.33 is not there."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None
    info = libc.mallinfo2()
    return info.uordblks + info.hblkhd


def forward_saved_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: str, dtype: str) -> int:
    """Bytes a training forward pass leaves allocated for the backward pass (the activations autograd
    saves, and the loss's log-softmax), by the allocator's count: torch.cuda's on GPUs, malloc's on
    CPU. The logits are dropped first, as train_step drops them."""
    model.train()
    model(x, targets=y)[1].backward()  # gradients and lazily built state exist before the count
    gc.collect()
    synchronize(device)
    cuda = device.startswith("cuda")
    before = torch.cuda.memory_allocated(device) if cuda else cpu_heap_in_use()
    with autocast(device, dtype):
        loss = model(x, targets=y)[1]
    synchronize(device)
    after = torch.cuda.memory_allocated(device) if cuda else cpu_heap_in_use()
    del loss
    model.zero_grad(set_to_none=True)
    return after - before


# --- sampling -----------------------------------------------------------------------------------
def sampling_speed(model: nn.Module, new_tokens: int, use_cache: bool, cfg: Config, device: str,
                   dtype: str) -> Timing:
    """Time to generate `new_tokens` after a one-token prompt, as sample.py does: cfg.num_samples
    sequences in one batch, at cfg's temperature and top_k."""
    model.eval()
    prompt = torch.zeros((cfg.num_samples, 1), dtype=torch.long, device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    with autocast(device, dtype):
        model.generate(prompt, new_tokens, temperature=cfg.temperature, top_k=cfg.top_k,
                       use_cache=use_cache, generator=generator,
                       valid_vocab_size=Tokenizer(model.config.vocab_size).n_vocab)
    synchronize(device)
    timing = Timing(time.perf_counter() - wall, time.process_time() - cpu)
    model.train()
    return timing


def sampling_speeds(runs: dict[str, TrainingRun], new_tokens: int, rounds: int = 2) -> dict[str, dict]:
    """{name: {"cache": Timing, "nocache": Timing}}, the fastest of `rounds` interleaved rounds."""
    best = {name: {} for name in runs}
    for r in range(rounds):
        for name, run in runs.items():
            progress(f"sampling round {r + 1}/{rounds}: {name}")
            for mode in ("cache", "nocache"):
                t = sampling_speed(run.model, new_tokens, mode == "cache", run.cfg, run.device, run.dtype)
                old = best[name].get(mode, t)
                best[name][mode] = Timing(min(old.wall_s, t.wall_s), min(old.cpu_s, t.cpu_s))
    return best


def decoding_matmul_forms(model: nn.Module, rows: int, device: str, dtype: str) -> list[dict]:
    """Both forms of x (rows, K) @ W^T timed for each distinct shape of 2-D weight W (N, K) in the
    model: the vocabulary (or reflow's basis and recipes) and every linear layer of a block."""
    out, seen = [], set()
    with torch.no_grad(), autocast(device, dtype):
        for name, weight in model.named_parameters():
            if weight.dim() != 2 or name == "wpe.weight" or tuple(weight.shape) in seen:
                continue  # the position table is looked up, not multiplied
            seen.add(tuple(weight.shape))
            x = torch.randn(rows, weight.size(1), device=weight.device, dtype=weight.dtype)
            seconds = matmul_form.time_forms(x, weight, repeats=20)
            plain, transposed = seconds[matmul_form.PLAIN], seconds[matmul_form.TRANSPOSED]
            N, K = weight.shape
            out.append({"weight": name, "shape": f"{rows}x{K} @ ({N}x{K})^T", "plain_ms": plain * 1e3,
                        "transposed_ms": transposed * 1e3, "ratio": plain / transposed})
    return out
