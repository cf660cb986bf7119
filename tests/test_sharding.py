"""Sharded training (training/sharding.py) on 2 gloo processes: the same weights as one process, and
checkpoints of full tensors that resume on 1 and on 2 processes under any sharding."""

import shutil
import subprocess

import pytest
import torch
from train_fixtures import ONE_THREAD_ENV, one_thread, run_args, run_config, torchrun_command, write_dataset  # noqa: F401

import check
import train
from core.checkpoint import load_checkpoint

# 4 micro-batches: 2 per rank, so gradients are reduced only after the second (no_sync / FSDP's switch).
RUN = dict(model="gpt2-new", max_iters=8, eval_interval=4, log_interval=10**6, gradient_accumulation_steps=4)


def torchrun(tmp_path, nproc, out, **overrides):
    result = subprocess.run(torchrun_command(nproc, *run_args(tmp_path, out, **{**RUN, **overrides})),
                            cwd=tmp_path, env=ONE_THREAD_ENV, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def assert_same_run(a, b, rtol=1e-4, atol=1e-5):
    """Weights and AdamW moments equal to float tolerance (2 ranks sum gradients in another order)."""
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=rtol, atol=atol)
    assert sorted(a["optimizer"]["state"]) == sorted(b["optimizer"]["state"])
    for index, state in a["optimizer"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            other = b["optimizer"]["state"][index][name]
            torch.testing.assert_close(other, state[name], rtol=rtol, atol=atol)
    for group, other in zip(a["optimizer"]["param_groups"], b["optimizer"]["param_groups"], strict=True):
        assert (group["params"], group["lr"], group["weight_decay"], *group["betas"]) == \
            (other["params"], other["lr"], other["weight_decay"], *other["betas"])
    assert a["iter_num"] == b["iter_num"]


def test_zero_and_fsdp_match_one_process_and_resume_across_shardings(tmp_path, capsys):
    write_dataset(tmp_path / "data")
    # ZeRO-1 for 4 steps, saved, with the published configs' other memory settings (openwebtext_common.py),
    # which change how a step is computed, not what: the same weights as one plain process.
    torchrun(tmp_path, 2, "zero", max_iters=4, shard="optimizer", activation_checkpointing=True,
             chunked_loss=True)
    train.train(run_config(tmp_path, "single4", **{**RUN, "max_iters": 4}))
    train.train(run_config(tmp_path, "single8", **RUN))
    zero, single4 = load_checkpoint(tmp_path / "zero"), load_checkpoint(tmp_path / "single4")
    assert all(not k.startswith("_") and v.is_contiguous() for k, v in zero["model"].items())
    assert_same_run(single4, zero)  # one file of full tensors: AdamW's layout, every parameter's state

    for where in ("fsdp", "resumed1"):
        shutil.copytree(tmp_path / "zero", tmp_path / where)
    # The ZeRO checkpoint resumes on 2 processes under FSDP (which saves it whole again) and on 1.
    out = torchrun(tmp_path, 2, "fsdp", init_from="resume", shard="full", max_new_tokens=4)
    assert "resuming at step 4" in out and "--- sample" in out
    train.train(run_config(tmp_path, "resumed1", init_from="resume", **RUN))
    single8 = load_checkpoint(tmp_path / "single8")
    assert_same_run(single8, load_checkpoint(tmp_path / "fsdp"))
    assert_same_run(single8, load_checkpoint(tmp_path / "resumed1"))
    assert not torch.allclose(single8["model"]["wte.weight"], single4["model"]["wte.weight"])  # it trained
    check.main([str(tmp_path / "fsdp")])  # an ordinary checkpoint to the tools that read one
    assert "iter_num: 8" in capsys.readouterr().out


def test_unknown_shard_mode_is_one_line(tmp_path, capsys):
    write_dataset(tmp_path / "data")
    with pytest.raises(SystemExit) as exit:
        train.main(run_args(tmp_path, shard="zero"))
    err = capsys.readouterr().err
    assert exit.value.code == 2 and err.count("\n") == 1
    assert "shard must be 'none', 'optimizer' or 'full', got 'zero'" in err
