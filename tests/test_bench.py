"""bench.py's numbers exist and are positive (speed targets are shown by bench.py, not asserted here),
and the baselines it races against compute the same functions as our models."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from conftest import tiny_config

import bench as bench_script
from benchmarking.measurements import TrainingRun, step_peak_memory
from core.checkpoint import save_checkpoint
from core.config import Config
from core.errors import UserError
from models import build_model
from models.baselines import MaterializedReflow, ReferenceGPT2

TINY = ["--n_layer=1", "--n_head=2", "--n_embd=32", "--n_signals=16", "--block_size=16",
        "--vocab_size=128", "--batch_size=2", "--steps=1", "--rounds=1", "--warmup=1",
        "--sample_tokens=8"]


def bench(*args):
    result = subprocess.run([sys.executable, "bench.py", "config/train_shakespeare_reflow.py", *TINY, *args],
                            capture_output=True, text=True)
    return result


def test_json_has_the_numbers_for_each_model():
    result = bench("--json", "--models=reflow,gpt2-new,gpt2-reference")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for key in ["train_tokens_per_s", "mfu", "sample_tokens_per_s_cache", "sample_tokens_per_s_nocache",
                "peak_memory_bytes", "flops_per_s", "peak_flops"]:
        assert report[key] > 0, key
    assert report["model"] == "reflow" and report["device"] == "cpu"
    runs = {run["model"]: run for run in report["runs"]}
    assert list(runs) == ["reflow", "gpt2-new", "gpt2-reference"]
    assert runs["reflow"]["train_ratio_to_first"] == 1.0
    ratio = runs["gpt2-new"]["train_tokens_per_s"] / runs["reflow"]["train_tokens_per_s"]
    assert runs["gpt2-new"]["train_ratio_to_first"] == pytest.approx(ratio)
    assert runs["reflow"]["tokens_per_step"] == 2 * 16
    assert runs["gpt2-reference"]["sample_tokens_per_s_cache"] is None  # no KV cache to measure
    for run in runs.values():  # MFU is FLOP/s over the peak, with nanoGPT's FLOP count
        assert run["mfu"] == pytest.approx(run["flops_per_s"] / report["peak_flops"])


def test_table_and_checkpoint(tmp_path):
    cfg = Config(model="gpt2-new", n_layer=1, n_head=2, n_embd=32, block_size=16, vocab_size=128)
    model = build_model(cfg.model, cfg.model_config())
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config), "iter_num": 3,
                     "best_val_loss": 4.0, "config": cfg.to_dict()}, tmp_path / "ckpt.pt")
    result = bench(f"--init_from={tmp_path}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert lines[header + 1].split()[0] == "gpt2-new"  # the checkpoint's architecture, not the config's
    assert "MFU" in lines[header] and "speedup" in lines[header]


def test_bad_options_get_one_line(capsys):
    for args, expected in [
        ([*TINY, "--step=3"], "did you mean 'steps'"),
        ([*TINY, "--models=reflow,gpt3"], "unknown model 'gpt3'"),
        ([*TINY, "--rounds=many"], "must be int"),
        ([*TINY, "--models=reflow-lite"], "reflow-lite needs n_kv_head < n_head"),
        ([], "give at least one config file"),
    ]:
        with pytest.raises(SystemExit) as exit:
            bench_script.main(["config/train_shakespeare_reflow.py", *args] if args else [])
        err = capsys.readouterr().err
        assert exit.value.code == 2, err
        assert err.startswith("error: ") and expected in err and err.count("\n") == 1


def test_reference_gpt2_computes_the_same_function_as_ours():
    config = tiny_config()
    ours, reference = build_model("gpt2", config), ReferenceGPT2(config)
    reference.load_state_dict(ours.state_dict())  # same names, same shapes
    idx = torch.randint(0, 97, (2, 16))
    logits, loss = ours(idx, targets=idx)
    ref_logits, ref_loss = reference(idx, targets=idx)
    torch.testing.assert_close(ref_logits, logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ref_loss, loss)
    assert reference.flops_per_token(16) == ours.flops_per_token(16)


def test_materialized_reflow_equals_two_skinny_matmuls():
    config = tiny_config()
    ours, materialized = build_model("reflow", config), MaterializedReflow(config)
    materialized.load_state_dict(ours.state_dict())
    idx = torch.randint(0, 97, (2, 16))
    torch.testing.assert_close(materialized(idx)[0], ours(idx)[0], rtol=1e-5, atol=1e-5)


def test_step_peak_memory_counts_the_state_and_the_step():
    cfg = Config(model="reflow", n_layer=1, n_head=2, n_embd=32, n_signals=16, block_size=16,
                 vocab_size=4096, batch_size=4, gradient_accumulation_steps=1)
    run = TrainingRun(build_model(cfg.model, cfg.model_config()), cfg, "cpu", "float32")
    run.step()  # the optimizer state exists from the first step on
    params = sum(p.numel() for p in run.model.parameters()) * 4
    assert 3 * params <= run.state_bytes() < 3 * params + 1024  # weights, AdamW's moments, step counts
    assert step_peak_memory(run) > run.state_bytes()


def test_keep_freed_memory_stops_page_faults_on_reallocation():
    # In child processes: the setting is process-wide and cannot be undone.
    code = """
import resource, sys, torch
from core.hardware import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(64 * 2**20 // 4)  # 64 MiB, touched, then freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(applied, min([faults() for _ in range(16)][-4:]))  # the steady state, as in a training loop
"""
    if not sys.platform.startswith("linux"):
        pytest.skip("keep_freed_memory tunes glibc's malloc: Linux only")
    kept = subprocess.run([sys.executable, "-c", code, "keep"], capture_output=True, text=True)
    default = subprocess.run([sys.executable, "-c", code, "default"], capture_output=True, text=True)
    applied, kept_faults = kept.stdout.split()
    _, default_faults = default.stdout.split()
    assert applied == "True"
    assert int(default_faults) > 10_000  # all 16k pages of 4 KiB faulted in again, every time
    assert int(kept_faults) < 1_000


def test_compile_both_gives_an_eager_and_a_compiled_row_per_model():
    files, options, overrides = bench_script.parse_command_line(
        ["config/train_shakespeare_gpt2.py", *TINY, "--models=gpt2,gpt2-reference", "--compile_both"])
    rows = bench_script.rows_to_measure(files, options, overrides)
    assert [(name, cfg.compile) for name, cfg, _ in rows] == [
        ("gpt2", False), ("gpt2+compile", True), ("gpt2-reference", False), ("gpt2-reference+compile", True)]
    assert rows[0][1].n_embd == 32  # the overrides reach every row


def test_variants_add_a_row_per_model_with_the_config_changed():
    files, options, overrides = bench_script.parse_command_line(
        ["config/train_shakespeare_reflow.py", *TINY, "--models=reflow,gpt2-reference",
         "--variants=chunked_loss,attention=sigmoid"])
    rows = bench_script.rows_to_measure(files, options, overrides)
    assert [name for name, _, _ in rows] == [
        "reflow", "reflow+chunked_loss", "reflow+attention=sigmoid", "gpt2-reference"]
    assert rows[1][1].chunked_loss and not rows[0][1].chunked_loss
    assert rows[2][1].attention == "sigmoid" and rows[2][2]().config.attention == "sigmoid"
    with pytest.raises(UserError, match="attention must be 'softmax' or 'sigmoid', got 'cosine'"):
        cosine = dataclasses.replace(options, variants="attention=cosine")
        bench_script.rows_to_measure(files, cosine, overrides)


def test_matmul_forms_and_variants_run_end_to_end():
    result = bench("--json", "--models=gpt2-new", "--variants=activation_checkpointing", "--matmul_forms")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [run["model"] for run in report["runs"]] == ["gpt2-new", "gpt2-new+activation_checkpointing"]
    forms = report["matmul_forms"]["gpt2-new"]
    assert {row["weight"] for row in forms} >= {"wte.weight", "blocks.0.attn.c_attn.weight"}
    assert all(row["plain_ms"] > 0 and row["transposed_ms"] > 0 for row in forms)
