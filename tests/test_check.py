"""check.py on configs and checkpoints, through its command line."""

import subprocess
import sys

import torch
from conftest import tiny_model

from core.checkpoint import save_checkpoint


def run_check(*args):
    return subprocess.run([sys.executable, "check.py", *args], capture_output=True, text=True)


def test_config_prints_table_and_params_line():
    result = run_check("config/train_reflow_1.py")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "params: 463.67M"
    assert any(line.startswith("recipe") and "51,511,296" in line for line in lines)


def test_checkpoint_summary(tmp_path):
    model = tiny_model("reflow-topk")
    checkpoint = {
        "model": model.state_dict(), "model_args": vars(model.config), "iter_num": 7,
        "best_val_loss": 3.25, "config": {"model": "reflow-topk"},
    }
    save_checkpoint(checkpoint, tmp_path / "ckpt.pt")
    result = run_check(str(tmp_path))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "iter_num: 7" in out and "best_val_loss: 3.25" in out
    assert "recipes: 97 tokens x 16 signals" in out and "basis: 16 signals x 32 dims" in out
    norm = model.state_dict()["basis"].norm().item()
    assert f"norm {norm:.4g}" in out


def test_bad_inputs_get_one_line(tmp_path):
    result = run_check(str(tmp_path / "missing.pt"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: no checkpoint at") and "Traceback" not in result.stderr
    result = run_check("config/train_reflow_1.py", "--n_layr=3")
    assert result.returncode == 2 and "did you mean 'n_layer'" in result.stderr
    torch.save({"model": {}}, tmp_path / "half.pt")
    result = run_check(str(tmp_path / "half.pt"))
    assert result.returncode == 2 and "not a reflow checkpoint" in result.stderr


def test_checkpoint_against_a_different_config_is_refused(tmp_path):
    model = tiny_model("reflow")
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config),
                     "config": {"model": "reflow"}}, tmp_path / "ckpt.pt")
    result = run_check("config/train_reflow_1.py", str(tmp_path / "ckpt.pt"))
    assert result.returncode == 2
    assert "holds a different architecture than the config" in result.stderr
    assert "n_layer 2 vs 32" in result.stderr
