"""Two "nodes" of one process each on 127.0.0.1, started as on two machines (two torchrun commands
with --nnodes=2): the same weights as one process; and a rank that dies or hangs makes the other exit
with one line within the collective timeout instead of waiting forever."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_fixtures import (  # noqa: F401  (one_thread: an autouse fixture)
    ONE_THREAD_ENV,
    REPO,
    child_pids,
    end_process_tree,
    one_thread,
    run_args,
    run_config,
    wait_for_new_save,
    write_dataset,
)

import train
from core.checkpoint import load_checkpoint

RUN = dict(model="gpt2-new", max_iters=4, eval_interval=2, log_interval=10**6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(node_rank: int, port: int, tmp_path, **overrides) -> subprocess.Popen:
    """One node's torchrun, as the README's multi-node command runs it on each machine."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node_rank={node_rank}",
               "--nproc_per_node=1", f"--rdzv_endpoint=127.0.0.1:{port}", str(REPO / "train.py"),
               *run_args(tmp_path, "nodes", **{**RUN, **overrides})]
    return subprocess.Popen(command, cwd=tmp_path, env=ONE_THREAD_ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def test_two_nodes_match_one_process(tmp_path):
    write_dataset(tmp_path / "data")
    port = free_port()
    nodes = [start_node(rank, port, tmp_path) for rank in (0, 1)]
    outputs = [node.communicate(timeout=120) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, stderr[-3000:]
    assert "2 processes" in outputs[0][0] and outputs[1][0] == ""  # rank 0 alone reports
    train.train(run_config(tmp_path, "single", **RUN))
    single, two = load_checkpoint(tmp_path / "single"), load_checkpoint(tmp_path / "nodes")
    assert two["iter_num"] == 4
    for key, value in single["model"].items():
        torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fault", [signal.SIGKILL, signal.SIGSTOP], ids=["rank dies", "rank hangs"])
def test_a_lost_rank_makes_the_others_exit_within_the_timeout(tmp_path, fault):
    write_dataset(tmp_path / "data")
    port, timeout = free_port(), 4
    run = dict(max_iters=10**6, lr_decay_iters=10**6, collective_timeout_s=timeout)
    nodes, worker = [start_node(rank, port, tmp_path, **run) for rank in (0, 1)], None
    try:
        wait_for_new_save(tmp_path / "nodes" / "ckpt.pt", nodes[0])  # both ranks are training
        assert nodes[0].poll() is None, nodes[0].communicate()[1][-3000:]
        worker = child_pids(nodes[1].pid)[0]
        os.kill(worker, fault)  # rank 1 exits at once, or hangs: alive, connected, silent
        stopped_at = time.monotonic()
        _, stderr = nodes[0].communicate(timeout=60)
        waited = time.monotonic() - stopped_at
    finally:
        for node in nodes:  # the stopped rank and its node's torchrun: ours to end
            end_process_tree(node)
        if worker is not None and Path(f"/proc/{worker}").exists():  # orphaned if its torchrun ended first
            os.kill(worker, signal.SIGKILL)
    assert nodes[0].returncode != 0
    lines = [line for line in stderr.splitlines() if line.startswith("error: rank 0: lost the other ranks")]
    assert len(lines) == 1 and f"collective_timeout_s={timeout}" in lines[0], stderr[-3000:]
    assert waited < timeout + 30
