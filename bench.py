"""Benchmark: training throughput, MFU, peak memory and sampling speed, several models side by side.

    python bench.py config/train_shakespeare_reflow.py
    python bench.py config/train_shakespeare_reflow.py --models=reflow,gpt2-new,gpt2,gpt2-reference \
        --compile_both
    python bench.py config/train_shakespeare_reflow.py config/train_shakespeare_gpt2_new.py --json
    python bench.py config/train_shakespeare_reflow.py --init_from=out/shakespeare_reflow   # a checkpoint
    python bench.py --gpu_report       # every GPU claim in one markdown table (benchmarking/gpu_report.py)
    python bench.py config/train_shakespeare_reflow.py --models=reflow,gpt2-new \
        --variants=chunked_loss,activation_checkpointing,attention=sigmoid --matmul_forms

Each config file (plus --key=value overrides, as in train.py) gives one row per model; --models
runs several architectures at that config's size, including the baselines of models/baselines.py
(gpt2-reference: GPT-2 written plainly from its equations; reflow-materialized). Ratios are to
the first row. How the figures are measured is explained in benchmarking/measurements.py.

Bench options: models, steps (timed steps per round), rounds, warmup, sample_tokens (0 skips
sampling), compile_both (eager and compiled rows), keep_freed_memory (CPU; False to see what it
buys), threads, json, variants (extra rows per model with config keys changed: what chunked_loss,
activation_checkpointing or sigmoid attention cost in tokens/s and peak memory), matmul_forms (time
both forms of every skinny product of a decoding step, models/matmul_form.py), gpu_report.
"""

import dataclasses
import json
import os
import sys
import typing
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarking.gpu_report import device_label, format_report, gpu_report
from benchmarking.measurements import (
    PeakMatmul,
    TrainingRun,
    build_any,
    decoding_matmul_forms,
    progress,
    sampling_speeds,
    step_peak_memory,
    time_interleaved,
)
from core.checkpoint import load_checkpoint, model_from_checkpoint, with_architecture_of
from core.config import Config, check_key, check_type, load_config, parse_args, parse_value, validate
from core.errors import UserError, exit_on_user_error
from core.hardware import keep_freed_memory, peak_flops, resolve_device, resolve_dtype
from core.memory_plan import check_sampling_fits, check_training_fits
from models import MODELS, Transformer
from models.baselines import BASELINES

PEAK = "(peak matmul)"


# The smallest valid value of each bench count, checked before anything is built or timed.
OPTION_MINIMUMS = {"steps": 1, "rounds": 1, "warmup": 0, "sample_tokens": 0, "threads": 0}


@dataclass
class BenchOptions:
    models: str = ""  # comma-separated names to run at each config's size; empty: the config's model
    steps: int = 3  # timed training steps per round
    rounds: int = 5  # each model's step time is its fastest round
    warmup: int = 2  # untimed steps first: torch.compile compiles here
    compile_both: bool = False  # each model twice, eager and compiled ("name+compile")
    sample_tokens: int = 256  # new tokens per sampling measurement; 0 skips sampling
    keep_freed_memory: bool = True  # CPU: core.hardware.keep_freed_memory; False measures without it
    threads: int = 0  # torch threads; 0 keeps torch's default (one per core)
    json: bool = False  # print the numbers as JSON instead of a table
    # Comma-separated config changes, each adding a row per model, e.g. "chunked_loss,attention=sigmoid"
    # (a bare key means key=True): "reflow+chunked_loss" beside "reflow".
    variants: str = ""
    matmul_forms: bool = False  # time x @ W.T against (W @ x.T).T for every weight a decoding step uses
    gpu_report: bool = False  # run benchmarking/gpu_report.py's checks instead (no config file needed)

    def __post_init__(self):
        for key, minimum in OPTION_MINIMUMS.items():
            if getattr(self, key) < minimum:
                raise UserError(f"--{key} must be at least {minimum}, got {getattr(self, key)}")
        cores = os.cpu_count() or 1
        if self.threads > cores:  # more threads than cores only queue; 100,000 of them crash torch
            raise UserError(f"--threads must be at most this machine's {cores} cores, got {self.threads}")


def parse_command_line(argv: list[str]) -> tuple[list[str], BenchOptions, dict[str, str]]:
    """Config files, bench options, and the remaining --key=value overrides for every config."""
    files = [arg for arg in argv if not arg.startswith("--")]
    bench_keys = typing.get_type_hints(BenchOptions)
    flags = [f"{arg}=True" if bench_keys.get(arg[2:]) is bool else arg  # bare --json means --json=True
             for arg in argv if arg.startswith("--")]
    _, raw = parse_args(flags)
    if not files and raw.get("gpu_report") != "True":
        raise UserError("give at least one config file: python bench.py config/train_shakespeare_reflow.py")
    hints = {**typing.get_type_hints(Config), **bench_keys}
    options, overrides = {}, {}
    for key, value in raw.items():
        check_key(key, hints, source="the command line")
        if key in bench_keys:
            options[key] = check_type(key, parse_value(value), bench_keys[key], "the command line")
        else:
            overrides[key] = value
    options = BenchOptions(**options)
    parse_variants(options.variants)  # bad input fails here, before any work
    return files, options, overrides


def parse_variants(text: str) -> list[tuple[str, dict]]:
    """[(label, {key: value})] for --variants: "chunked_loss,attention=sigmoid"."""
    hints = typing.get_type_hints(Config)
    variants = []
    for item in filter(None, text.split(",")):
        key, sep, raw = item.partition("=")
        check_key(key, hints, source="the command line")
        value = check_type(key, parse_value(raw) if sep else True, hints[key], "the command line")
        variants.append((item, {key: value}))
    return variants


def rows_to_measure(files: list[str], options: BenchOptions, overrides: dict[str, str]):
    """(label, config, build) for every config file and model name asked for; build() makes the
    model, so that each is allocated only when its turn comes. Bad input fails here, before any."""
    rows = []
    for file in files:
        cfg = load_config(file, overrides)
        if cfg.init_from != "scratch":  # benchmark a trained model: its architecture and weights
            if options.models:
                raise UserError("--models builds fresh models; leave it out to benchmark a checkpoint")
            checkpoint = load_checkpoint(cfg.out_dir if cfg.init_from == "resume" else cfg.init_from)
            cfg = with_architecture_of(checkpoint, cfg)
            rows.append((label(file, cfg.model, files), cfg, lambda c=checkpoint: model_from_checkpoint(c)))
            continue
        for name in options.models.split(",") if options.models else [cfg.model]:
            if name not in MODELS and name not in BASELINES:
                raise UserError(f"unknown model {name!r}; valid: {', '.join([*MODELS, *BASELINES])}")
            if name in MODELS:
                validate(dataclasses.replace(cfg, model=name))
            for compile in [False, True] if options.compile_both else [cfg.compile]:
                row_cfg = dataclasses.replace(cfg, model=name, compile=compile)
                row = label(file, name, files) + ("+compile" if options.compile_both and compile else "")
                rows.append((row, row_cfg, lambda n=name, c=row_cfg: build_any(n, c)))
                for variant, changes in parse_variants(options.variants) if name in MODELS else []:
                    variant_cfg = dataclasses.replace(row_cfg, **changes)
                    validate(variant_cfg)
                    build = lambda n=name, c=variant_cfg: build_any(n, c)  # noqa: E731
                    rows.append((f"{row}+{variant}", variant_cfg, build))
    return rows


def label(file: str, model: str, files: list[str]) -> str:
    return model if len(files) == 1 else f"{Path(file).stem}:{model}"


@exit_on_user_error
def main(argv: list[str]) -> None:
    files, options, overrides = parse_command_line(argv)
    if options.gpu_report:
        device = resolve_device(load_config(None, overrides).device)  # checked: a bogus or absent device
        print(format_report(gpu_report(device), device_label(device)))
        return
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(0)
    rows = rows_to_measure(files, options, overrides)
    device = resolve_device(rows[0][1].device)
    dtype = resolve_dtype(rows[0][1].dtype, device)
    kept = device == "cpu" and options.keep_freed_memory and keep_freed_memory()

    for _, cfg, _ in rows:  # an absurd size is one line before anything is built, not a crash
        planned = cfg.model if cfg.model in MODELS else BASELINES[cfg.model].REIMPLEMENTS
        check_training_fits(dataclasses.replace(cfg, model=planned), device, dtype)
    # Build and warm up every model, and measure its memory, before any timing.
    runs, memory = {}, {}
    for name, cfg, build in rows:
        model = build()
        if options.sample_tokens and isinstance(model, Transformer):
            check_sampling_fits(model, cfg.num_samples, options.sample_tokens, device, dtype)
        progress(f"warming up {name}" + (" (compiling)" if cfg.compile else ""))
        runs[name] = TrainingRun(model, cfg, device, dtype)
        for _ in range(max(options.warmup - 1, 0)):
            runs[name].step()
        memory[name] = step_peak_memory(runs[name])  # the last warm-up step
    work = {name: run.step for name, run in runs.items()}
    if device == "cpu":  # the peak is timed in the same rounds, under the same background load
        work[PEAK] = peak_matmul = PeakMatmul()
    timing = time_interleaved(work, options.rounds, options.steps, device)
    if device == "cpu":
        peak = peak_matmul.flops_per_call / timing[PEAK].wall_s
        peak_cpu_time = peak_matmul.flops_per_call / timing[PEAK].cpu_s
    else:
        try:
            peak = peak_flops(device, dtype)
        except ValueError:  # a GPU missing from core.hardware.GPU_PEAK_FLOPS: no MFU, the rest
            peak = None
        peak_cpu_time = None

    # Sampling runs the eager model, so a compiled row would repeat its eager twin's numbers.
    samplers = {name: run for name, run in runs.items()
                if isinstance(run.model, Transformer) and not (options.compile_both and run.cfg.compile)}
    speeds = sampling_speeds(samplers, options.sample_tokens) if options.sample_tokens else {}
    # Once per model: its variant rows ("name+...") multiply by weights of the same shapes.
    forms = {name: decoding_matmul_forms(run.model, run.cfg.num_samples, device, dtype)
             for name, run in samplers.items() if "+" not in name} if options.matmul_forms else {}

    results = []
    for name, run in runs.items():
        model, cfg = run.model, run.cfg
        flops_per_step = model.flops_per_token(cfg.block_size) * run.tokens_per_step
        step = timing[name]
        sample = {}
        if name in speeds:
            tokens = run.cfg.num_samples * options.sample_tokens
            cache, nocache = speeds[name]["cache"], speeds[name]["nocache"]
            sample = {"cache": tokens / cache.wall_s, "nocache": tokens / nocache.wall_s,
                      "speedup": nocache.wall_s / cache.wall_s,
                      "speedup_cpu_time": nocache.cpu_s / cache.cpu_s}
        results.append({
            "model": name, "config": cfg.model, "params": model.num_params(),
            "tokens_per_step": run.tokens_per_step, "train_step_s": step.wall_s,
            "train_tokens_per_s": run.tokens_per_step / step.wall_s,
            "flops_per_s": flops_per_step / step.wall_s,
            "mfu": flops_per_step / step.wall_s / peak if peak else None,
            # CPU only: the same ratio in CPU-seconds, which other processes on the machine do not
            # inflate (with 1 thread; with more, threads waiting for each other count too).
            "mfu_cpu_time": flops_per_step / step.cpu_s / peak_cpu_time if peak_cpu_time else None,
            "train_step_cpu_s": step.cpu_s,
            "peak_memory_bytes": memory[name],
            "sample_tokens_per_s_cache": sample.get("cache"),
            "sample_tokens_per_s_nocache": sample.get("nocache"),
            "sample_cache_speedup": sample.get("speedup"),
            "sample_cache_speedup_cpu_time": sample.get("speedup_cpu_time"),
        })
    for result in results:
        result["train_ratio_to_first"] = result["train_tokens_per_s"] / results[0]["train_tokens_per_s"]
        result["train_cpu_time_ratio_to_first"] = results[0]["train_step_cpu_s"] / result["train_step_cpu_s"]

    cfg = rows[0][1]
    header = {
        "command": "python bench.py " + " ".join(argv), "device": device, "dtype": dtype,
        "threads": torch.get_num_threads(), "peak_flops": peak,
        "compile": "both" if options.compile_both else cfg.compile,
        "keep_freed_memory": kept, "load_average_before": load_before,
        "timing": f"fastest of {options.rounds} rounds x {options.steps} steps, models interleaved",
        "sampling": f"{options.sample_tokens} new tokens after a 1-token prompt, batch {cfg.num_samples}"
                    if options.sample_tokens else "skipped",
    }
    if options.json:
        print(json.dumps({**header, **results[0], "runs": results, "matmul_forms": forms}, indent=2))
    else:
        print_table(header, results, cfg)
        print_matmul_forms(forms)


def print_table(header: dict, results: list[dict], cfg: Config) -> None:
    load = header["load_average_before"]
    busy = f"load average {load:.1f} before the run" if load is not None else ""
    if load is not None and load > 0.5:
        busy += ": other processes are running, so timings are low and noisy"
    peak = header["peak_flops"]
    print(f"{header['command']}")
    threads = f"{header['threads']} thread{'s' if header['threads'] != 1 else ''}"
    print(f"device {header['device']} ({threads}), {header['dtype']}, compile "
          f"{header['compile']}, batch {cfg.batch_size} x {cfg.block_size} x "
          f"{cfg.gradient_accumulation_steps} micro-batches; {header['timing']}")
    peak_text = f"{peak / 1e9:,.1f} GFLOP/s" if peak else "unknown (add the GPU to GPU_PEAK_FLOPS)"
    print(f"peak {peak_text}{' (fp32 matmul, measured)' if header['device'] == 'cpu' else ''}; {busy}")
    print(f"sampling: {header['sampling']}")
    columns = ["model", "params", "tokens/s", "vs first", "GFLOP/s", "MFU", "peak mem",
               "sample tok/s cache", "no cache", "speedup"]
    table = [columns]
    for r in results:
        def speed(x):
            return f"{x:,.1f}" if x is not None else "-"

        table.append([
            r["model"], f"{r['params'] / 1e6:.2f}M", f"{r['train_tokens_per_s']:,.0f}",
            f"{r['train_ratio_to_first']:.2f}x", f"{r['flops_per_s'] / 1e9:,.1f}",
            f"{r['mfu']:.1%}" if r["mfu"] is not None else "-",
            f"{r['peak_memory_bytes'] / 2**30:.2f} GiB",
            speed(r["sample_tokens_per_s_cache"]), speed(r["sample_tokens_per_s_nocache"]),
            f"{r['sample_cache_speedup']:.1f}x" if r["sample_cache_speedup"] else "-",
        ])
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))


def print_matmul_forms(forms: dict[str, list[dict]]) -> None:
    """Per model, each skinny product of a decoding step timed in both forms (models/matmul_form.py)."""
    for name, rows in forms.items():
        print(f"\n{name}: decoding's skinny products, ms per call (fastest of the repeats)")
        for r in rows:
            print(f"  {r['weight']:<28} {r['shape']:<26} x @ W.T {r['plain_ms']:8.3f}   "
                  f"(W @ x.T).T {r['transposed_ms']:8.3f}   plain/transposed {r['ratio']:5.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
