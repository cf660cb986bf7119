"""Checkpoints we did not write: nanoGPT's loads as our gpt2; anything else is one clear line."""

import subprocess
import sys

import pytest
import torch
from conftest import tiny_model
from train_fixtures import run_config, write_dataset

import train
from core.checkpoint import load_checkpoint, model_from_checkpoint
from core.errors import UserError


def nanogpt_state_dict(model, compiled: bool) -> dict:
    """Our gpt2's weights under the names nanoGPT's model.py gives them (as its train.py saves
    them: lm_head.weight is the same tensor as wte, each block keeps its causal-mask buffer, and a
    compiled model prefixes every name with _orig_mod.)."""
    T = model.config.block_size
    state = {}
    for name, tensor in model.state_dict().items():
        nano = "transformer." + ("h." + name.removeprefix("blocks.") if name.startswith("blocks.") else name)
        state[nano] = tensor.clone()
    state["lm_head.weight"] = state["transformer.wte.weight"]
    for i in range(model.config.n_layer):
        state[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(T, T)).view(1, 1, T, T)
    return {("_orig_mod." if compiled else "") + k: v for k, v in state.items()}


def write_nanogpt_checkpoint(folder, bias: bool, compiled: bool):
    model = tiny_model("gpt2", bias=bias)
    cfg = model.config
    model_args = dict(n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd, block_size=cfg.block_size,
                      bias=cfg.bias, vocab_size=cfg.vocab_size, dropout=0.0)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": nanogpt_state_dict(model, compiled), "optimizer": {"state": {}, "param_groups": []},
                "model_args": model_args, "iter_num": 5000, "best_val_loss": torch.tensor(1.47),
                "config": {"dataset": "shakespeare_char", "device": "cuda", "dtype": "bfloat16",
                           "n_layer": cfg.n_layer, "init_from": "scratch"}},
               folder / "ckpt.pt")
    return model


@pytest.mark.parametrize("bias, compiled", [(True, False), (False, True)])
def test_a_nanogpt_checkpoint_loads_as_our_gpt2_with_equal_logits(tmp_path, bias, compiled):
    ours = write_nanogpt_checkpoint(tmp_path, bias, compiled).eval()
    loaded = model_from_checkpoint(load_checkpoint(tmp_path)).eval()
    assert type(loaded).__name__ == "GPT2"
    idx = torch.randint(0, ours.config.vocab_size, (2, ours.config.block_size))
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], ours(idx)[0], rtol=0, atol=0)


def test_sample_and_check_run_on_a_nanogpt_checkpoint(tmp_path):
    write_nanogpt_checkpoint(tmp_path / "nano", bias=True, compiled=False)
    sample = subprocess.run([sys.executable, "sample.py", f"--out_dir={tmp_path / 'nano'}", "--device=cpu",
                             "--num_samples=1", "--max_new_tokens=4", "--start=a"],
                            capture_output=True, text=True)
    assert sample.returncode == 0, sample.stderr
    check = subprocess.run([sys.executable, "check.py", str(tmp_path / "nano")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "model: gpt2" in check.stdout and "blocks.0.attn.c_attn.weight" in check.stdout


def test_resuming_a_nanogpt_checkpoint_is_refused_with_a_way_out(tmp_path):
    write_dataset(tmp_path / "data")
    write_nanogpt_checkpoint(tmp_path / "run", bias=True, compiled=False)
    with pytest.raises(UserError, match="holds no optimizer state to resume; fine-tune from its weights"):
        train.train(run_config(tmp_path, init_from="resume", model="gpt2", n_layer=2, n_head=4, n_embd=32,
                               block_size=32, vocab_size=97))


def test_unknown_model_args_and_an_untied_head_are_one_line(tmp_path):
    model = tiny_model("reflow")
    torch.save({"model": model.state_dict(), "model_args": {**vars(model.config), "flux_capacitor": 3},
                "config": {"model": "reflow"}}, tmp_path / "ckpt.pt")
    with pytest.raises(UserError, match="model_args has keys this version does not know .flux_capacitor."):
        load_checkpoint(tmp_path)
    write_nanogpt_checkpoint(tmp_path / "untied", bias=False, compiled=False)
    checkpoint = torch.load(tmp_path / "untied" / "ckpt.pt", weights_only=True)
    checkpoint["model"]["lm_head.weight"] = torch.zeros_like(checkpoint["model"]["lm_head.weight"])
    torch.save(checkpoint, tmp_path / "untied" / "ckpt.pt")
    with pytest.raises(UserError, match="lm_head is not tied to wte"):
        load_checkpoint(tmp_path / "untied")
