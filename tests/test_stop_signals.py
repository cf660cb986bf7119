"""A run always stops when told: the first SIGINT or SIGTERM stops it cleanly at the next step or
evaluation batch, a second signal of either kind ends it at once, and the checkpoint stays whole.

Every signal is sent after an event the run reports (a save, a log line), never after a guessed
time, so the tests hold on a fast machine and a loaded one alike."""

import os
import signal
import subprocess
import time

from train_fixtures import (  # noqa: F401  (one_thread: an autouse fixture)
    ONE_THREAD_ENV,
    one_thread,
    run_args,
    run_config,
    torchrun_command,
    train_command,
    wait_for_new_save,
    write_dataset,
)

import train
from core.checkpoint import load_checkpoint
from training.distributed import Distributed
from training.stop_request import StopRequest

UNBUFFERED_ENV = {**ONE_THREAD_ENV, "PYTHONUNBUFFERED": "1"}  # log lines reach the test as printed
ENDLESS = dict(max_iters=10**6, lr_decay_iters=10**6, log_interval=1)


def hang_up_as_a_terminal_does() -> None:
    """In the child: SIGHUP at its default. A suite started under nohup would hand on its ignored
    SIGHUP, and train.py rightly keeps nohup's choice, so the SIGHUP test would wait for nothing."""
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def start(command: list[str], cwd, **popen) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env=UNBUFFERED_ENV, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=hang_up_as_a_terminal_does, **popen)


def wait_for_line(process: subprocess.Popen, prefix: str) -> None:
    for line in process.stdout:
        if line.startswith(prefix):
            return
    raise AssertionError(f"the run ended before printing {prefix!r}: {process.stderr.read()[-2000:]}")


def test_sigint_then_sigterm_exits_at_once_and_the_checkpoint_is_whole(tmp_path):
    write_dataset(tmp_path / "data")
    ckpt = tmp_path / "run" / "ckpt.pt"
    process = start(train_command(*run_args(tmp_path, **ENDLESS, eval_interval=1, eval_iters=1)), tmp_path)
    while process.poll() is None and not (ckpt.exists() and load_checkpoint(ckpt)["iter_num"] >= 2):
        wait_for_new_save(ckpt, process)
    # Back to back: the run is still stopping (saving, or on its way out) when SIGTERM arrives.
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGTERM, stderr[-2000:]
    assert "second signal (SIGTERM): exiting at once, without saving" in stderr
    assert "Traceback" not in stderr and "stopped at step" not in stdout
    assert load_checkpoint(ckpt)["iter_num"] >= 2  # whole and loadable


def test_sigterm_during_a_long_evaluation_stops_at_the_next_batch(tmp_path):
    """The evaluation at step 4 would read a million batches; SIGTERM stops it and saves step 4."""
    write_dataset(tmp_path / "data")
    train.train(run_config(tmp_path, max_iters=2, eval_interval=2))
    process = start(train_command(*run_args(tmp_path, **ENDLESS, init_from="resume", eval_interval=4,
                                            eval_iters=10**6)), tmp_path)
    wait_for_line(process, "iter 4/")  # step 4 is done: its evaluation follows
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr[-2000:]
    assert "stopped at step 4: saved" in stdout and "step 4: train loss" not in stdout
    saved = load_checkpoint(tmp_path / "run")
    assert saved["iter_num"] == 4 and saved["evaluated"] is False  # a resume evaluates step 4 again


def test_sigterm_to_a_torchrun_group_stops_every_rank_cleanly(tmp_path):
    """SIGTERM to torchrun's process group (what `kill -- -PGID` and schedulers do): torchrun
    passes it to both gloo workers, which stop at the same step; rank 0 saves."""
    write_dataset(tmp_path / "data")
    ckpt = tmp_path / "ddp" / "ckpt.pt"
    ddp = {**ENDLESS, "model": "gpt2-new", "eval_interval": 2, "log_interval": 10**6}
    process = start(torchrun_command(2, *run_args(tmp_path, "ddp", **ddp)), tmp_path, start_new_session=True)
    wait_for_new_save(ckpt, process)
    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=90)
    saved = load_checkpoint(ckpt)
    k = saved["iter_num"]
    assert "2 processes" in stdout and f"stopped at step {k}: saved" in stdout, stderr[-3000:]
    # torchrun itself reports the signal with its own traceback; no worker may have one.
    assert "second signal" not in stderr and 'train.py", line' not in stderr and "exitcode" not in stderr


def test_a_repeat_under_ddp_is_the_same_request_and_any_other_second_signal_exits(monkeypatch):
    """torchrun may deliver one Ctrl-C twice (from the terminal and from itself): under DDP the same
    signal again within DUPLICATE_WINDOW_S is not a second request. Anything else is."""
    sent = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(sig))  # instead of dying
    monkeypatch.setattr(signal, "signal", lambda sig, handler: None)
    ddp = StopRequest(Distributed(rank=1, world_size=2))
    ddp.handle(signal.SIGINT, None)
    ddp.handle(signal.SIGINT, None)
    assert ddp.requested and sent == []
    ddp.handle(signal.SIGTERM, None)
    assert sent == [signal.SIGTERM]
    single = StopRequest(Distributed())
    single.handle(signal.SIGINT, None)
    single.handle(signal.SIGINT, None)
    assert sent == [signal.SIGTERM, signal.SIGINT]


def test_a_run_whose_reader_exited_still_saves_when_stopped(tmp_path):
    """The reader of its output exits (a study killed with -9, a closed `| tee`), then SIGTERM: the
    broken pipe is not fatal, and the stop saves as always. A hung-up terminal (SIGHUP) stops and
    saves the same way."""
    write_dataset(tmp_path / "data")
    for sig, out in ((signal.SIGTERM, "piped"), (signal.SIGHUP, "hung_up")):
        process = start(train_command(*run_args(tmp_path, out, **{**ENDLESS, "eval_interval": 10**6})),
                        tmp_path)
        wait_for_line(process, "iter 1/")
        process.stdout.close()  # the reader is gone: every later line hits a broken pipe
        process.stderr.close()
        time.sleep(0.5)  # steps log into the closed pipe (each takes milliseconds; fewer still test it)
        process.send_signal(sig)
        assert process.wait(timeout=60) == 0, sig
        assert load_checkpoint(tmp_path / out)["iter_num"] >= 1  # saved at the stop, the only save
