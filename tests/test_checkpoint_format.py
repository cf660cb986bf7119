"""A checkpoint says what it holds: the model name in model_args, read back by one function.

Checkpoints written before the name moved into model_args (it was only in `config`) still load.
"""

import dataclasses
import subprocess
import sys

import pytest
import torch
from train_fixtures import REPO, one_thread, run_config, write_dataset  # noqa: F401  (autouse fixture)

import train
from core.checkpoint import (
    architecture_of,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    with_architecture_of,
)
from core.config import Config
from core.errors import UserError
from experiments.context import load_context
from models import ModelConfig, build_model


def test_a_run_stores_the_model_name_and_a_model_config_only_key_set_on_the_command_line(tmp_path):
    write_dataset(tmp_path / "data")
    cfg = run_config(tmp_path, model="gpt2-new", rope_theta=500.0, swiglu_multiple_of=32, max_iters=2,
                     eval_interval=2)
    train.train(cfg)
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["model_args"]["model"] == "gpt2-new"
    assert checkpoint["model_args"]["rope_theta"] == 500.0
    model = model_from_checkpoint(checkpoint)
    assert model.config.swiglu_hidden == 96  # 8 * 32 / 3 = 85, rounded up to a multiple of 32
    expected = 1.0 / 500.0 ** (torch.arange(0, 16, 2).float() / 16)  # head size 32 / 2 heads
    assert torch.allclose(model.rotary.cos[1], expected.cos())
    assert load_context(cfg).controls[0].config == model.config  # the suite reads the new format too


def write_old_style(path, model, name: str | None) -> None:
    """A checkpoint as the first round wrote it: model_args without the name, the name in config."""
    config = {"model": name} if name else {}
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config), "config": config},
                    path)


def test_an_old_checkpoint_without_the_name_in_model_args_still_loads(tmp_path):
    torch.manual_seed(0)
    config = ModelConfig(n_layer=1, n_head=2, n_embd=16, n_signals=8, block_size=8, vocab_size=64)
    model = build_model("reflow", config)
    write_old_style(tmp_path / "ckpt.pt", model, "reflow")
    checkpoint = load_checkpoint(tmp_path)
    assert architecture_of(checkpoint) == ("reflow", config)
    loaded = model_from_checkpoint(checkpoint)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values(),
                                                 strict=True))
    cfg = with_architecture_of(checkpoint, Config(), keep=("block_size",))
    assert (cfg.model, cfg.n_layer, cfg.n_signals, cfg.block_size) == ("reflow", 1, 8, Config().block_size)


def test_a_checkpoint_that_names_no_model_is_one_clear_error(tmp_path):
    model = build_model("gpt2", ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=64))
    write_old_style(tmp_path / "ckpt.pt", model, None)
    with pytest.raises(UserError, match="does not say which architecture"):
        model_from_checkpoint(load_checkpoint(tmp_path))
    result = subprocess.run([sys.executable, "check.py", str(tmp_path)], capture_output=True, text=True,
                            cwd=REPO)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "does not say which architecture" in result.stderr and "Traceback" not in result.stderr


def test_model_args_with_an_unknown_key_is_one_clear_error(tmp_path):
    model = build_model("gpt2", ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=64))
    args = {"model": "gpt2", **dataclasses.asdict(model.config), "flash": True}
    save_checkpoint({"model": model.state_dict(), "model_args": args}, tmp_path / "ckpt.pt")
    with pytest.raises(UserError, match=r"keys this version does not know\W+flash"):
        model_from_checkpoint(load_checkpoint(tmp_path))
