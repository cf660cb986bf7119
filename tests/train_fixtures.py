"""Tiny datasets and run configs, so training tests take seconds on 2 CPU cores."""

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import load_config, parse_args

VOCAB = 256
REPO = Path(__file__).resolve().parent.parent

# A model of a few thousand parameters: a step takes milliseconds.
TINY_RUN = dict(
    model="reflow", n_layer=2, n_head=2, n_embd=32, n_signals=16, block_size=16, vocab_size=VOCAB,
    batch_size=4, gradient_accumulation_steps=2, learning_rate=3e-3, warmup_iters=2, max_iters=8,
    lr_decay_iters=8, min_lr=3e-4, eval_interval=4, eval_iters=2, log_interval=1, device="cpu",
    dtype="float32", max_new_tokens=0, dataset="tiny",
)


# Tiny models run fastest on one thread, and on a shared machine more threads only wait on each other.
ONE_THREAD_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse in the modules that import it: tests run torch on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_dataset(data_dir: Path, name: str = "tiny", train_tokens: int = 4000, val_tokens: int = 500,
                  mask: bool = False, seed: int = 0) -> Path:
    """A learnable token stream (each token mostly determines the next) in nanoGPT's format; with
    mask=True, *_mask.bin marks every third token as trained on."""
    rng = np.random.default_rng(seed)
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", train_tokens), ("val", val_tokens)):
        ids = np.zeros(n, dtype=np.uint16)
        for i in range(1, n):
            ids[i] = (ids[i - 1] * 7 + 3) % VOCAB if rng.random() < 0.8 else rng.integers(VOCAB)
        ids.tofile(folder / f"{split}.bin")
        if mask:
            (np.arange(n) % 3 == 0).astype(np.uint8).tofile(folder / f"{split}_mask.bin")
    return folder


def run_args(tmp_path: Path, out: str = "run", **overrides) -> list[str]:
    """Command-line overrides for a tiny run writing to tmp_path/out, reading tmp_path/data."""
    values = {**TINY_RUN, "data_dir": str(tmp_path / "data"), "out_dir": str(tmp_path / out), **overrides}
    return [f"--{key}={value}" for key, value in values.items()]


def run_config(tmp_path: Path, out: str = "run", **overrides):
    """The Config that train.py builds from run_args."""
    return load_config(*parse_args(run_args(tmp_path, out, **overrides)))


def train_command(*args: str) -> list[str]:
    return [sys.executable, str(REPO / "train.py"), *args]


def torchrun_command(nproc: int, *args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            str(REPO / "train.py"), *args]


def wait_for_new_save(ckpt: Path, process, timeout: float = 60) -> None:
    """Block until `process` (re)writes ckpt, or ends."""
    before = ckpt.stat().st_mtime_ns if ckpt.exists() else None
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        if ckpt.exists() and ckpt.stat().st_mtime_ns != before:
            return
        time.sleep(0.01)


def child_pids(parent: int) -> list[int]:
    return [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]


def end_process_tree(process) -> None:
    """SIGKILL `process` and every descendant, stopped ones included (SIGKILL needs no SIGCONT).
    Descendants are found first: torchrun starts its workers in their own sessions, so killing its
    process group would leave them orphaned."""
    tree, i = [process.pid], 0
    while i < len(tree):
        try:
            tree += child_pids(tree[i])
        except OSError:  # already gone
            pass
        i += 1
    for pid in reversed(tree):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    process.wait()


def rank_of(pid: int) -> str | None:
    """The RANK torchrun gave a worker process."""
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return next((item[5:].decode() for item in env if item.startswith(b"RANK=")), None)
