"""train.py: the learning-rate schedule, exact resume, DDP equivalence, fine-tuning, logging."""

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
from train_fixtures import (  # noqa: F401  (one_thread: an autouse fixture)
    ONE_THREAD_ENV,
    REPO,
    child_pids,
    one_thread,
    rank_of,
    run_args,
    run_config,
    torchrun_command,
    wait_for_new_save,
    write_dataset,
)

import train
from core.checkpoint import load_checkpoint, model_from_checkpoint
from core.config import Config
from core.tokenizer import decode
from models import build_model
from training.batches import Batches
from training.optimization import learning_rate_at


def test_learning_rate_schedule():
    cfg = Config(learning_rate=1e-3, min_lr=1e-4, warmup_iters=10, lr_decay_iters=110)
    assert learning_rate_at(0, cfg) == pytest.approx(1e-3 / 11)
    assert learning_rate_at(9, cfg) == pytest.approx(1e-3 * 10 / 11)
    assert learning_rate_at(10, cfg) == pytest.approx(1e-3)  # warmup done: the peak
    assert learning_rate_at(60, cfg) == pytest.approx(5.5e-4)  # halfway down the cosine
    assert learning_rate_at(110, cfg) == pytest.approx(1e-4)
    assert learning_rate_at(500, cfg) == 1e-4
    constant = Config(learning_rate=1e-3, decay_lr=False, warmup_iters=10)
    assert [learning_rate_at(i, constant) for i in (0, 50, 10**6)] == [1e-3] * 3


def weights(path):
    return load_checkpoint(path)["model"]


def test_resume_is_exact(tmp_path):
    """8 steps straight == 4 steps, stop, resume 4 more: the same weights bit for bit, the same losses."""
    write_dataset(tmp_path / "data")
    straight = train.train(run_config(tmp_path, "straight"))
    first = train.train(run_config(tmp_path, "split", max_iters=4))
    second = train.train(run_config(tmp_path, "split", init_from="resume"))
    assert first.iter_num == 4 and second.iter_num == straight.iter_num == 8
    assert {**first.losses, **second.losses} == straight.losses  # floats compared exactly
    assert second.best_val_loss == straight.best_val_loss
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert all(torch.equal(a[k], b[k]) for k in a)
    a, b = (load_checkpoint(tmp_path / run)["optimizer"]["state"] for run in ("straight", "split"))
    assert all(torch.equal(a[i]["exp_avg_sq"], b[i]["exp_avg_sq"]) for i in a)
    assert straight.losses[7] < straight.losses[0] - 0.2  # and it learns


def test_ddp_matches_one_process_and_ctrl_c_on_one_rank_stops_all(tmp_path):
    """2 gloo processes under torchrun (one micro-batch each) are stopped by a Ctrl-C that reaches
    rank 1 only: every rank stops at the same step k, rank 0 saves, and the weights equal those of
    1 process that ran k steps with both micro-batches."""
    write_dataset(tmp_path / "data")
    ddp = dict(model="gpt2-new", max_iters=10**6, lr_decay_iters=10**6, eval_interval=5, log_interval=10**6)
    process = subprocess.Popen(torchrun_command(2, *run_args(tmp_path, "ddp", **ddp)), cwd=tmp_path,
                               env=ONE_THREAD_ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_new_save(tmp_path / "ddp" / "ckpt.pt", process)
    rank_1 = next(pid for pid in child_pids(process.pid) if rank_of(pid) == "1")
    os.kill(rank_1, signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    ddp_ckpt = load_checkpoint(tmp_path / "ddp")
    k = ddp_ckpt["iter_num"]
    assert "2 processes" in stdout and f"stopped at step {k}: saved" in stdout and k >= 5

    train.train(run_config(tmp_path, "single", **{**ddp, "max_iters": k}))
    single = load_checkpoint(tmp_path / "single")
    for key, value in single["model"].items():
        torch.testing.assert_close(ddp_ckpt["model"][key], value, rtol=1e-4, atol=1e-5)
    initial = build_model("gpt2-new", run_config(tmp_path, model="gpt2-new").model_config())
    assert not torch.allclose(single["model"]["wte.weight"], initial.wte.weight, atol=1e-3)  # it trained


def test_batches_do_not_depend_on_world_size(tmp_path):
    folder = write_dataset(tmp_path / "data")
    batches = Batches(folder, block_size=16, batch_size=2, seed=5)
    whole = batches.train_micro_batches(7, 4, rank=0, world_size=1, device="cpu")
    halves = [batches.train_micro_batches(7, 4, rank=r, world_size=2, device="cpu") for r in (0, 1)]
    quarters = [batches.train_micro_batches(7, 4, rank=r, world_size=4, device="cpu")[0] for r in range(4)]
    for part in (halves[0] + halves[1], quarters):
        pairs = zip(whole, part, strict=True)
        assert all(torch.equal(x, x2) and torch.equal(y, y2) for (x, y), (x2, y2) in pairs)
    other_step = batches.train_micro_batches(8, 4, rank=0, world_size=1, device="cpu")
    assert not torch.equal(whole[0][0], other_step[0][0])


def test_fine_tune_from_checkpoint_with_loss_mask(tmp_path):
    """init_from=<run dir>: its weights and architecture, a fresh optimizer, step 0; the loss
    counts only the targets the mask keeps (the SFT convention)."""
    write_dataset(tmp_path / "data")
    write_dataset(tmp_path / "data", name="sft", mask=True, seed=1)
    train.train(run_config(tmp_path, "base", max_iters=4))
    base = load_checkpoint(tmp_path / "base")
    # The fine-tune config names another size: the checkpoint's architecture wins.
    cfg = run_config(tmp_path, "sft", init_from=str(tmp_path / "base"), dataset="sft", n_layer=5,
                     max_iters=2, eval_interval=2, always_save_checkpoint=False)
    result = train.train(cfg)
    tuned = load_checkpoint(tmp_path / "sft")
    assert tuned["model_args"] == base["model_args"] and tuned["iter_num"] == 2
    assert tuned["config"]["n_layer"] == 2 and tuned["config"]["dataset"] == "sft"
    assert all(state["step"].item() == 2 for state in tuned["optimizer"]["state"].values())  # fresh
    # Step 0's loss is the base model's loss on the masked targets of step 0's batch.
    model = model_from_checkpoint(base)
    batches = Batches(tmp_path / "data" / "sft", block_size=16, batch_size=4, seed=cfg.seed)
    micro = batches.train_micro_batches(0, 2, rank=0, world_size=1, device="cpu")
    assert sum((y != -1).sum().item() for _, y in micro) < sum(y.numel() for _, y in micro) / 2
    with torch.no_grad():
        expected = sum(model(x, targets=y)[1].item() for x, y in micro) / 2
    assert result.losses[0] == pytest.approx(expected, rel=1e-5)


def test_log_lines_and_sample(tmp_path, capsys):
    write_dataset(tmp_path / "data")
    train.main(run_args(tmp_path, max_iters=4, log_interval=2, max_new_tokens=5))
    out = capsys.readouterr().out
    assert "reflow: " in out and "M params" in out
    line = next(line for line in out.splitlines() if line.startswith("iter 4/4: loss "))
    assert "lr " in line and "ms/step" in line and "tok/s" in line and "mfu " in line
    assert "step 4: train loss" in out and "val loss" in out
    assert "--- sample (temperature 0.8, top_k 200) ---" in out


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    write_dataset(tmp_path / "data")
    train.train(run_config(tmp_path, max_iters=2, eval_interval=2, wandb_log=True))
    run_id = load_checkpoint(tmp_path / "run")["wandb_run_id"]  # a resumed run logs into the same run
    record = next((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    keys = (b"train/loss", b"lr", b"tokens_per_sec", b"mfu", b"val/loss")
    # wandb's service process writes the log (protobuf; keys stored as text) on its own schedule,
    # and on a loaded machine may still be flushing when finish() returns.
    deadline = time.monotonic() + 30
    while not all(key in record.read_bytes() for key in keys) and time.monotonic() < deadline:
        time.sleep(0.5)
    logged = record.read_bytes()
    for key in keys:
        assert key in logged


def test_default_corpus_is_prepared_on_first_use(tmp_path):
    """The embedded corpus has only input.txt until the first run tokenizes it."""
    folder = tmp_path / "data" / "shakespeare"
    folder.mkdir(parents=True)
    text = (REPO / "data/shakespeare/input.txt").read_text()[:20000]
    (folder / "input.txt").write_text(text)
    cfg = run_config(tmp_path, dataset="shakespeare", vocab_size=50304, max_iters=1, eval_interval=1)
    train.train(cfg)
    train_ids = np.fromfile(folder / "train.bin", dtype=np.uint16)
    val_ids = np.fromfile(folder / "val.bin", dtype=np.uint16)
    assert len(val_ids) == pytest.approx(len(train_ids) / 9, abs=1)
    assert decode(np.concatenate([train_ids, val_ids]).tolist()) == text


def test_every_published_config_has_a_resume_wrapper():
    from core.config import load_config

    published = sorted(p for p in (REPO / "config").glob("train_*.py")
                       if "shakespeare" not in p.name and not p.stem.endswith("_resume"))
    assert len(published) == 7
    for path in published:
        base = load_config(str(path))
        resume = load_config(str(path.with_name(path.stem + "_resume.py")))
        assert resume.init_from == "resume" and base.init_from == "scratch"
        assert resume.to_dict() == {**base.to_dict(), "init_from": "resume"}


def test_eval_only_evaluates_a_checkpoint_without_touching_it(tmp_path, capsys):
    write_dataset(tmp_path / "data")
    first = train.train(run_config(tmp_path, max_iters=4, log_interval=100))
    before = (tmp_path / "run" / "ckpt.pt").read_bytes()
    result = train.train(run_config(tmp_path, init_from="resume", eval_only=True, max_iters=8))
    assert result.evaluations == {4: first.evaluations[4]} and result.losses == {}
    assert (tmp_path / "run" / "ckpt.pt").read_bytes() == before
