"""Nothing lost: SIGKILL at any moment, Ctrl-C, non-finite losses (Ctrl-C under DDP: test_train.py)."""

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_model
from train_fixtures import (  # noqa: F401  (one_thread: an autouse fixture)
    ONE_THREAD_ENV,
    one_thread,
    run_args,
    run_config,
    train_command,
    wait_for_new_save,
    write_dataset,
)

import train
from core.checkpoint import load_checkpoint
from core.config import Config
from training.optimization import NonFiniteUpdate, make_grad_scaler, make_optimizer, train_step

# Evaluate and save every step, so the signals land in evaluations, saves and steps alike.
KILL_RUN = dict(max_iters=40, lr_decay_iters=40, eval_interval=1, eval_iters=1, log_interval=1000,
                always_save_checkpoint=True)


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(train_command(*args), cwd=cwd, env=ONE_THREAD_ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def assert_same_state(a: dict, b: dict) -> None:
    assert (a["iter_num"], a["best_val_loss"]) == (b["iter_num"], b["best_val_loss"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for i, state in a["optimizer"]["state"].items():
        assert all(torch.equal(state[k], b["optimizer"]["state"][i][k]) for k in state)


def wait_for_save_at(ckpt: Path, step: int, process) -> None:
    """Block until `process` saves ckpt at `step` or later (or ends). Waiting for a step, not for
    a time, keeps the signals inside the run however fast the machine is."""
    while process.poll() is None:
        wait_for_new_save(ckpt, process)
        if ckpt.exists() and load_checkpoint(ckpt)["iter_num"] >= step:
            return


def test_killed_and_interrupted_runs_resume_to_the_same_end(tmp_path):
    """SIGKILL at 3 random moments, then Ctrl-C, resuming each time: the end state (weights,
    optimizer, step, best val loss) equals that of a run never interrupted, bit for bit."""
    write_dataset(tmp_path / "data")
    train.train(run_config(tmp_path, "straight", **KILL_RUN))
    ckpt = tmp_path / "killed" / "ckpt.pt"
    rng = random.Random(0)
    signal_after = sorted(rng.sample(range(2, 26), 4))  # the saves after which each signal is sent
    steps_saved = []
    for sig, step in zip([signal.SIGKILL] * 3 + [signal.SIGINT], signal_after, strict=True):
        resume = ["--init_from=resume"] if ckpt.exists() else []
        process = start(run_args(tmp_path, "killed", **KILL_RUN) + resume, tmp_path)
        wait_for_save_at(ckpt, step, process)
        time.sleep(rng.uniform(0, 0.005))  # somewhere in an evaluation, a save or a step
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
        steps_saved.append(load_checkpoint(ckpt)["iter_num"])  # always loadable
        if sig == signal.SIGINT:  # a clean stop: saved where it stopped, no sample, no traceback
            assert process.returncode == 0 and "Traceback" not in stderr, stderr
            assert f"stopped at step {steps_saved[-1]}: saved" in stdout and "--- sample" not in stdout
            assert "resume with: --init_from=resume" in stdout
    assert steps_saved == sorted(steps_saved) and 0 < steps_saved[0] and steps_saved[-1] < 40
    train.train(run_config(tmp_path, "killed", init_from="resume", **KILL_RUN))  # the last resume finishes
    assert_same_state(load_checkpoint(ckpt), load_checkpoint(tmp_path / "straight"))


def test_an_exploding_run_stops_at_its_step_and_keeps_the_checkpoint(tmp_path, capsys):
    """A learning rate of 1e30 overflows the weights in step 2's update (its loss is still finite)."""
    write_dataset(tmp_path / "data")
    train.train(run_config(tmp_path, max_iters=2, eval_interval=2, log_interval=100))
    ckpt = tmp_path / "run" / "ckpt.pt"
    saved = ckpt.read_bytes()
    explode = dict(init_from="resume", learning_rate=1e30, decay_lr=False, max_iters=6, eval_interval=2,
                   log_interval=100, always_save_checkpoint=True)
    with pytest.raises(SystemExit) as exit_info:
        train.main(run_args(tmp_path, **explode))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: non-finite weights after step 2 (the update of a step with loss ")
    assert f"{ckpt} keeps the last good state" in err and err.count("\n") == 1
    assert ckpt.read_bytes() == saved

    good = load_checkpoint(ckpt)["model"]
    result = train.train(run_config(tmp_path, on_nonfinite="skip", **explode))
    out = capsys.readouterr().out
    assert [step for step, loss in result.losses.items() if loss != loss] == [2, 3, 4, 5]
    for step in (2, 3, 4, 5):
        assert f"non-finite weights after step {step} (" in out and f"loss nan at step {step}" not in out
    kept = load_checkpoint(ckpt)  # every step was undone: saved at 6 with the weights of step 2
    assert kept["iter_num"] == 6 and all(torch.equal(good[k], v) for k, v in kept["model"].items())


def test_a_non_finite_step_leaves_weights_and_optimizer_untouched():
    model = tiny_model("gpt2-new")
    x = torch.randint(0, 97, (2, 8))
    batch = (x, torch.roll(x, -1, dims=1))
    optimizer = make_optimizer(model, Config(), "cpu")
    scaler = make_grad_scaler("cpu", "float32")
    step = dict(lr=1e-3, grad_clip=1.0, device="cpu", dtype="float32")
    train_step(model, optimizer, scaler, [batch], **step)
    with torch.no_grad():
        model.blocks[0].ln_1.weight[0] = float("inf")  # an overflowed weight: the loss becomes NaN
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [state["exp_avg"].clone() for state in optimizer.state.values()]
    loss = train_step(model, optimizer, scaler, [batch], **step)
    assert loss != loss
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(m, s["exp_avg"]) for m, s in zip(moments, optimizer.state.values(), strict=True))
    assert all(p.grad is None for p in model.parameters())


def test_a_finite_loss_whose_update_overflows_is_undone_or_stops(tmp_path, capsys):
    """learning_rate 1e39 is inf in float32: step 0's loss is finite, its update fills the weights
    with inf. skip puts weights and optimizer back and skips the step; stop ends with one line."""
    model = tiny_model("gpt2-new")
    x = torch.randint(0, 97, (2, 8))
    batch = (x, torch.roll(x, -1, dims=1))
    optimizer = make_optimizer(model, Config(), "cpu")
    scaler = make_grad_scaler("cpu", "float32")
    step = dict(grad_clip=1.0, device="cpu", dtype="float32")
    train_step(model, optimizer, scaler, [batch], lr=1e-3, **step)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [state["exp_avg_sq"].clone() for state in optimizer.state.values()]
    with pytest.raises(NonFiniteUpdate):
        train_step(model, optimizer, scaler, [batch], lr=1e39, undo_non_finite=True, **step)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    states = optimizer.state.values()
    assert all(torch.equal(m, s["exp_avg_sq"]) for m, s in zip(moments, states, strict=True))

    write_dataset(tmp_path / "data")
    overflow = dict(learning_rate=1e39, decay_lr=False, max_iters=2, eval_interval=2, log_interval=100)
    result = train.train(run_config(tmp_path, on_nonfinite="skip", **overflow))
    assert [step for step, loss in result.losses.items() if loss != loss] == [0, 1]
    assert "non-finite weights after step 0 (the update of a step with loss" in capsys.readouterr().out
    assert all(torch.isfinite(t).all() for t in load_checkpoint(tmp_path / "run")["model"].values())
    with pytest.raises(SystemExit) as exit_info:
        train.main(run_args(tmp_path, "stop", **overflow))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: non-finite weights after step 0")
