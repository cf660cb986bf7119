"""`python bench.py --gpu_report`: one command that checks every GPU claim, as a markdown table.

On one GPU it takes a few minutes (under 8 on an A100/H100) and measures:
- training tokens/s and MFU of config/train_reflow_1_small.py (reflow) and of gpt2-new at the same
  size, with bf16 autocast + torch.compile, then with fp16 autocast + GradScaler (the T4 path):
  fp16 must skip no step after warm-up (GradScaler finding inf/NaN gradients) and its loss must fall;
- which scaled-dot-product-attention kernel runs (flash, memory-efficient, cuDNN or math), per dtype;
- sampling speed with and without the key/value cache;
- exact resume: N + N steps through a checkpoint against 2N straight, weights compared;
- peak memory of a step against core/memory_plan's estimate, for the small config, and for
  config/train_reflow_1_big.py at batch_size 1 in fp16 with the process capped to 16 GB
  (torch.cuda.set_per_process_memory_fraction), as on a Tesla T4.

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
import tempfile
import time
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
    step_s = (time.perf_counter() - start) / steps
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
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(cap_bytes / total)
    try:
        torch.manual_seed(0)
        run = TrainingRun(build_model(cfg.model, cfg.model_config()), cfg, device, dtype)
        run.step()  # the optimizer state exists from the first step on
        measured = step_peak_memory(run)
    except torch.OutOfMemoryError:
        measured = None
    finally:
        if cap_bytes:
            torch.cuda.set_per_process_memory_fraction(1.0)
        run = None
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    planner_says = "fits" if plan.fits else "does not fit"
    if measured is None:
        return {"check": "peak memory", "setting": setting, "ok": not plan.fits,
                "result": f"out of memory; planned {planned / GIB:.2f} GiB",
                "verdict": f"planner: {planner_says} ({'agrees' if not plan.fits else 'WRONG'})"}
    error = planned / measured - 1
    return {"check": "peak memory", "setting": setting, "ok": abs(error) <= 0.15,
            "result": f"measured {measured / GIB:.2f} GiB, planned {planned / GIB:.2f} GiB",
            "verdict": f"plan {error:+.0%} off the measurement" + (f"; planner: {planner_says}"
                                                                   if capacity else "")}


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
        rows.append(memory_row(report_config(BIG, device, batch_size=1), "float16", device, T4_BYTES))
    else:
        rows.append(skipped("peak memory", "reflow_1_big, batch 1, capped to 16 GB", need_gpu))
    return rows


def release_memory(device: str) -> None:
    torch._dynamo.reset()
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def format_report(rows: list[dict], device: str) -> str:
    """The rows as a markdown table, under a line naming the device and the date."""
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU (shrunken model)"
    lines = [f"GPU report on {name}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}", "",
             "| check | setting | result | verdict |", "| --- | --- | --- | --- |"]
    for row in rows:
        mark = "" if row.get("ok", True) else " ✗"
        lines.append(f"| {row['check']} | {row['setting']} | {row['result']} | {row['verdict']}{mark} |")
    return "\n".join(lines)
