"""`python bench.py --gpu_report`: one command that checks every GPU claim, as a markdown table.

On one GPU it takes a few minutes (under 8 on an A100/H100) and measures:
- training tokens/s and MFU of config/train_reflow_1_small.py (reflow) and of gpt2-new at the same
  size, with bf16 autocast + torch.compile, then with fp16 autocast + GradScaler (the T4 path):
  fp16 must skip no step after warm-up (GradScaler finding inf/NaN gradients) and its loss must fall;
- which scaled-dot-product-attention kernel runs (flash, memory-efficient, cuDNN or math), per dtype;
- sampling speed with and without the key/value cache;
- exact resume: N + N steps through a checkpoint against 2N straight, weights compared;
- peak memory of a step against core/memory_plan's estimate, for the small config, and for
  config/train_reflow_1_big.py at its shipped micro-batch in fp16 with the process capped to 16 GB
  (torch.cuda.set_per_process_memory_fraction), as on a Tesla T4;
- the T4 rehearsal: T4_REHEARSAL_STEPS steps of config/train_reflow_1_small.py as shipped (micro-batch
  16 x 1024, chunked loss) in fp16 + GradScaler, capped to 16 GB, with the planner's total against
  torch.cuda.max_memory_allocated over the whole run, skipped steps, the loss and tokens/s.

On CPU it runs too, on a shrunken model (CPU_SIZE) and a few steps, in fp32: the rows that need a
GPU say why they were skipped. A training step here is one micro-batch (gradient_accumulation_steps=1)
of the config's batch_size x block_size, on fixed random tokens (so the loss falls as the model
memorizes them). MFU = model FLOPs per token (6N plus attention) x tokens/s / the peak of
core.hardware.peak_flops_and_source.
"""

import contextlib
import dataclasses
import gc
import io
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarking.measurements import TrainingRun, progress, sampling_speeds, step_peak_memory, synchronize
from core.config import Config, load_config
from core.hardware import autocast, peak_flops_and_source, resolve_device
from core.memory_plan import GIB, Target, plan_for_model
from core.tokenizer import GPT2_VOCAB_SIZE
from models import build_model

SMALL = "config/train_reflow_1_small.py"
BIG = "config/train_reflow_1_big.py"
T4_BYTES = 16 * 10**9  # a Tesla T4's 16 GB
CPU_SIZE = dict(n_layer=2, n_head=2, n_embd=64, n_signals=32, block_size=64, batch_size=2)
RESUME_TOLERANCE = 1e-5  # max |weight difference| allowed between N + N and 2N steps
PLAN_TOLERANCE = 0.15  # the plan may be this far (as a share) from the measured peak
T4_REHEARSAL_STEPS = 300  # a few minutes on a T4: long enough for GradScaler to settle and the loss to fall
# Untimed steps first: torch.compile compiles, and GradScaler backs off from its initial 2^16 to a
# scale the gradients fit in (those first skips are expected; later ones are not).
WARMUP_STEPS = {"cuda": 10, "cpu": 1}


def report_config(path: str, device: str, **overrides) -> Config:
    cfg = load_config(path)
    cpu = CPU_SIZE if device == "cpu" else {}
    return dataclasses.replace(cfg, device=device, gradient_accumulation_steps=1, dropout=0.0,
                               **{**cpu, **overrides})


def skipped(check: str, setting: str, reason: str) -> dict:
    return {"check": check, "setting": setting, "result": "skipped", "verdict": reason}


def training_row(cfg: Config, dtype: str, steps: int, device: str) -> dict:
    """Tokens/s and MFU over `steps` timed steps after warm-up; fp16 also counts skipped steps."""
    setting = f"{cfg.model}, {dtype}{' + GradScaler' if dtype == 'float16' else ''}" \
              f"{', compile' if cfg.compile else ''}, batch {cfg.batch_size} x {cfg.block_size}"
    torch.manual_seed(0)
    run = TrainingRun(build_model(cfg.model, cfg.model_config()), cfg, device, dtype)
    losses, skips, step_s = run_steps(run, steps)
    tokens_per_s = run.tokens_per_step / step_s
    peak, source = peak_flops_and_source(device, dtype)
    mfu = run.model.flops_per_token(cfg.block_size) * tokens_per_s / peak
    falls = losses[-1] < losses[0]
    verdict = ("loss falls" if falls else "LOSS DID NOT FALL") + \
              (f", {skips} skipped steps after warm-up" if dtype == "float16" else "")
    ok = falls and skips == 0
    return {"check": "training", "setting": setting, "ok": ok,
            "result": f"{tokens_per_s:,.0f} tok/s, MFU {mfu:.1%} ({source})",
            "verdict": f"{verdict}: {losses[0]:.3f} -> {losses[-1]:.3f}"}


def run_steps(run: TrainingRun, steps: int) -> tuple[list[float], int, float]:
    """Warm-up steps, then `steps` timed ones: every step's loss, the steps GradScaler skipped after
    warm-up, and seconds per timed step."""
    device = run.device
    losses, skips = [], 0
    warmup = WARMUP_STEPS["cuda" if device.startswith("cuda") else "cpu"]
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            start = time.perf_counter()
        scale = run.scaler.get_scale() if run.scaler.is_enabled() else None
        losses.append(run.step())
        if scale is not None and run.scaler.get_scale() < scale and step >= warmup:
            skips += 1  # the scaler backs off only when it found inf/NaN gradients and skipped the step
    synchronize(device)
    return losses, skips, (time.perf_counter() - start) / steps


def sdpa_kernel_row(cfg: Config, dtype: str, device: str) -> dict:
    """The attention kernel SDPA dispatches to, read from the profiler's op names."""
    model = build_model(cfg.model, cfg.model_config()).to(device)
    x = torch.randint(0, GPT2_VOCAB_SIZE, (cfg.batch_size, cfg.block_size), device=device)
    with torch.profiler.profile() as profile, autocast(device, dtype):
        model(x, targets=x)[1].backward()
    names = {event.name for event in profile.events()}
    kernels = sorted(name.removeprefix("aten::_scaled_dot_product_") for name in names
                     if name.startswith("aten::_scaled_dot_product_") and "backward" not in name)
    return {"check": "attention kernel", "setting": f"{cfg.model}, {dtype}", "ok": True,
            "result": ", ".join(kernels) or "math (no fused SDPA op ran)",
            "verdict": "fused" if any("flash" in k or "efficient" in k or "cudnn" in k for k in kernels)
            else "not fused: the math path materializes the (T, T) scores"}


def sampling_row(cfg: Config, dtype: str, device: str, new_tokens: int) -> dict:
    run = TrainingRun(build_model(cfg.model, cfg.model_config()), cfg, device, dtype)
    speeds = sampling_speeds({"model": run}, new_tokens, rounds=1)["model"]
    tokens = cfg.num_samples * new_tokens
    cached, uncached = tokens / speeds["cache"].wall_s, tokens / speeds["nocache"].wall_s
    return {"check": "sampling", "setting": f"{cfg.model}, {dtype}, batch {cfg.num_samples}, "
                                            f"{new_tokens} new tokens", "ok": True,
            "result": f"cached {cached:,.0f} tok/s, uncached {uncached:,.0f} tok/s",
            "verdict": f"{cached / uncached:.1f}x from the cache"}


def resume_row(cfg: Config, steps: int) -> dict:
    """N + N steps through a checkpoint against 2N straight, by train.py itself. On a GPU some
    kernels (atomics in attention's backward) differ from run to run, so the 2N run is repeated too:
    resume is exact when its difference is within RESUME_TOLERANCE or within that repeat's."""
    import train
    from core.checkpoint import load_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data" / "report"
        data.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for split in ("train", "val"):
            rng.integers(0, GPT2_VOCAB_SIZE, 200_000, dtype=np.uint16).tofile(data / f"{split}.bin")
        common = dict(data_dir=str(Path(folder) / "data"), dataset="report", max_iters=2 * steps,
                      lr_decay_iters=2 * steps, warmup_iters=1, eval_interval=steps, eval_iters=1,
                      log_interval=10**6, max_new_tokens=0, compile=False, wandb_log=False)
        quiet = contextlib.redirect_stdout(io.StringIO())  # train.py's log lines stay out of the table
        with quiet:
            straight = train.train(dataclasses.replace(cfg, out_dir=f"{folder}/straight", **common))
            train.train(dataclasses.replace(cfg, out_dir=f"{folder}/again", **common))
            first = dataclasses.replace(cfg, out_dir=f"{folder}/split", **{**common, "max_iters": steps})
            train.train(first)
            second = train.train(dataclasses.replace(first, init_from="resume", max_iters=2 * steps))
        a, b, again = (load_checkpoint(f"{folder}/{run}")["model"] for run in ("straight", "split", "again"))
        worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
        noise = max((a[k].float() - again[k].float()).abs().max().item() for k in a)
        losses_equal = {**second.losses} == {k: v for k, v in straight.losses.items() if k >= steps}
    tolerance = max(RESUME_TOLERANCE, noise)
    ok = worst <= tolerance
    return {"check": "exact resume", "setting": f"{cfg.model}, {steps} + {steps} vs {2 * steps} steps",
            "ok": ok, "result": f"max abs weight difference {worst:.2e} (two straight runs: {noise:.2e}), "
                                f"losses {'identical' if losses_equal else 'differ'}",
            "verdict": f"{'within' if ok else 'BEYOND'} the tolerance {tolerance:.2g}"}


def memory_row(cfg: Config, dtype: str, device: str, cap_bytes: int | None = None) -> dict:
    """Measured peak of a step against the planner's allocations (its framework reserve left out:
    torch's allocator does not count the CUDA context)."""
    setting = f"{cfg.model} {cfg.n_layer} layers, {dtype}, batch {cfg.batch_size} x {cfg.block_size}"
    with torch.device("meta"):
        meta = build_model(cfg.model, cfg.model_config())
    capacity = cap_bytes or (torch.cuda.get_device_properties(device).total_memory
                             if device.startswith("cuda") else None)
    target = Target(device if not cap_bytes else "cap", device, capacity, dtype)
    if device == "cpu":
        target = Target("cpu", "CPU", None, dtype)
    plan = plan_for_model(cfg, meta, target, 1, cfg.batch_size)
    planned = plan.total_bytes - plan.items.get("framework reserve", 0)
    if cap_bytes:
        setting += f", capped to {cap_bytes / 1e9:.0f} GB"
    with memory_capped(device, cap_bytes):
        try:
            torch.manual_seed(0)
            run = TrainingRun(build_model(cfg.model, cfg.model_config()), cfg, device, dtype)
            run.step()  # the optimizer state exists from the first step on
            measured = step_peak_memory(run)
        except torch.OutOfMemoryError:
            measured = None
        run = None  # freed before the cache is emptied
    ok, result, verdict = plan_verdict(planned, measured, plan.fits)
    return {"check": "peak memory", "setting": setting, "ok": ok, "result": result, "verdict": verdict}


@contextlib.contextmanager
def memory_capped(device: str, cap_bytes: int | None):
    """Inside, this process may allocate at most cap_bytes of the GPU (torch's allocator raises
    OutOfMemoryError beyond), as if it ran on a smaller one; on the way out, the cap is lifted and
    the cache emptied. cap_bytes None: no cap."""
    if cap_bytes:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(cap_bytes / total, device)
    try:
        yield
    finally:
        if cap_bytes:
            torch.cuda.set_per_process_memory_fraction(1.0, device)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def plan_verdict(planned: int, measured: int | None, plan_fits: bool | None) -> tuple[bool, str, str]:
    """(ok, result, verdict) for the planner's allocations against a measured peak (None: the run
    ran out of memory). ok: within PLAN_TOLERANCE of the measurement, or out of memory where the
    planner said it would not fit. plan_fits None: no capacity to fit (CPU)."""
    says = "" if plan_fits is None else "fits" if plan_fits else "does not fit"
    if measured is None:
        return (plan_fits is False, f"out of memory; planned {planned / GIB:.2f} GiB",
                f"planner: {says} ({'agrees' if plan_fits is False else 'WRONG'})")
    error = planned / measured - 1
    verdict = f"plan {error:+.0%} off the measurement" + (f"; planner: {says}" if says else "")
    result = f"measured {measured / GIB:.2f} GiB, planned {planned / GIB:.2f} GiB"
    return abs(error) <= PLAN_TOLERANCE, result, verdict


@dataclass
class Rehearsal:
    """What the capped fp16 run of the small config measured (measure_t4_rehearsal)."""

    steps: int
    cap_bytes: int
    planned_bytes: int  # the plan less its framework reserve (which torch does not count)
    plan_fits: bool  # the plan's total, reserve included, within the cap
    peak_allocated: int | None  # torch.cuda.max_memory_allocated over the run; None: out of memory
    skipped_steps: int  # steps GradScaler skipped (inf/NaN gradients) after warm-up
    first_loss: float
    last_loss: float
    tokens_per_s: float


def measure_t4_rehearsal(device: str, steps: int = T4_REHEARSAL_STEPS) -> Rehearsal:
    """config/train_reflow_1_small.py as shipped, one micro-batch a step, fp16 + GradScaler, with this
    process capped to a T4's 16 GB; the planner's estimate taken for the same run first."""
    cfg = report_config(SMALL, device)
    with torch.device("meta"):
        meta = build_model(cfg.model, cfg.model_config())
    plan = plan_for_model(cfg, meta, Target("t4-cap", "16 GB cap", T4_BYTES, "float16"), 1, cfg.batch_size)
    planned = plan.total_bytes - plan.items["framework reserve"]
    losses, skips, step_s, peak = [math.nan], 0, math.inf, None
    with memory_capped(device, T4_BYTES):
        torch.cuda.reset_peak_memory_stats(device)
        try:
            torch.manual_seed(0)
            run = TrainingRun(build_model(cfg.model, cfg.model_config()), cfg, device, "float16")
            losses, skips, step_s = run_steps(run, steps)
            peak = torch.cuda.max_memory_allocated(device)
        except torch.OutOfMemoryError:
            pass
        run = None  # freed before the cache is emptied
    tokens = cfg.batch_size * cfg.block_size
    return Rehearsal(steps, T4_BYTES, planned, bool(plan.fits), peak, skips, losses[0], losses[-1],
                     tokens / step_s)


def rehearsal_row(measured: Rehearsal) -> dict:
    """The T4 rehearsal as one report row: it passes when the run fit the cap, the plan is within
    PLAN_TOLERANCE of the peak, no step was skipped after warm-up and the loss fell."""
    setting = (f"train_reflow_1_small.py as shipped, float16 + GradScaler, {measured.steps} steps, "
               f"capped to {measured.cap_bytes / 1e9:.0f} GB")
    plan_ok, result, verdict = plan_verdict(measured.planned_bytes, measured.peak_allocated,
                                            measured.plan_fits)
    if measured.peak_allocated is None:
        return {"check": "T4 rehearsal", "setting": setting, "ok": False, "result": result,
                "verdict": verdict}
    falls = measured.last_loss < measured.first_loss
    ok = plan_ok and falls and measured.skipped_steps == 0
    return {"check": "T4 rehearsal", "setting": setting, "ok": ok,
            "result": f"max_memory_allocated {measured.peak_allocated / GIB:.2f} GiB, planned "
                      f"{measured.planned_bytes / GIB:.2f} GiB; {measured.tokens_per_s:,.0f} tok/s",
            "verdict": f"{verdict}; {measured.skipped_steps} skipped steps after warm-up; loss "
                       f"{measured.first_loss:.3f} -> {measured.last_loss:.3f}"
                       f"{'' if falls else ' (DID NOT FALL)'}"}


def gpu_report(device: str = "auto", steps: int | None = None) -> list[dict]:
    """Every row of the report, measured on `device`."""
    device = resolve_device(device)
    cuda = device.startswith("cuda")
    steps = steps or (20 if cuda else 2)
    need_gpu = "needs a CUDA GPU"
    rows = []
    small = report_config(SMALL, device)
    size = dict(n_layer=small.n_layer, n_head=small.n_head, n_embd=small.n_embd)
    models = [small, dataclasses.replace(small, model="gpt2-new", **size)]
    bf16 = cuda and torch.cuda.is_bf16_supported()
    for model_cfg in models:
        if not cuda:
            progress(f"gpu report: {model_cfg.model} fp32 on CPU")
            rows.append(training_row(model_cfg, "float32", steps, device))
        for dtype in ("bfloat16", "float16"):
            label = f"{model_cfg.model}, {dtype}, compile"
            if not cuda or (dtype == "bfloat16" and not bf16):
                rows.append(skipped("training", label, need_gpu if not cuda else "no bf16 on this GPU"))
                continue
            progress(f"gpu report: {label}")
            rows.append(training_row(dataclasses.replace(model_cfg, compile=True), dtype, steps, device))
    for dtype in (["bfloat16"] if bf16 else []) + (["float16"] if cuda else ["float32"]):
        rows.append(sdpa_kernel_row(small, dtype, device))
    main_dtype = "bfloat16" if bf16 else "float16" if cuda else "float32"
    progress("gpu report: sampling")
    rows.append(sampling_row(small, main_dtype, device, 128 if cuda else 8))
    progress("gpu report: exact resume")
    rows.append(resume_row(dataclasses.replace(small, batch_size=min(small.batch_size, 4)),
                           5 if cuda else 2))
    progress("gpu report: peak memory")
    release_memory(device)  # compiled graphs and earlier runs hold memory the capped row needs
    rows.append(memory_row(small, main_dtype, device))
    if cuda:
        rows.append(memory_row(report_config(BIG, device), "float16", device, T4_BYTES))
        release_memory(device)
        progress(f"gpu report: T4 rehearsal, {T4_REHEARSAL_STEPS} steps")
        rows.append(rehearsal_row(measure_t4_rehearsal(device)))
    else:
        rows.append(skipped("peak memory", "reflow_1_big, shipped micro-batch, capped to 16 GB", need_gpu))
        rows.append(skipped("T4 rehearsal", "train_reflow_1_small.py, float16, capped to 16 GB", need_gpu))
    return rows


def release_memory(device: str) -> None:
    torch._dynamo.reset()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def device_label(device: str) -> str:
    """The GPU's name for the report's heading, or what the CPU run is."""
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU (shrunken model)"


def format_report(rows: list[dict], device_name: str, date: str | None = None) -> str:
    """The rows as one markdown table, under a line naming the device, torch and the date (today)."""
    date = date or time.strftime("%Y-%m-%d")
    lines = [f"GPU report on {device_name}, torch {torch.__version__}, {date}", "",
             "| check | setting | result | verdict |", "| --- | --- | --- | --- |"]
    for row in rows:
        mark = "" if row.get("ok", True) else " ✗"
        lines.append(f"| {row['check']} | {row['setting']} | {row['result']} | {row['verdict']}{mark} |")
    return "\n".join(lines)
