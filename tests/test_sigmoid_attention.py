"""Sigmoid attention: sigmoid(q.k/sqrt(D) + b) under the causal mask, no normalization over keys."""

import math

import pytest
import torch
from conftest import tiny_model

from core.config import load_config
from core.errors import UserError
from models import MODELS


def test_gpt2_sigmoid_attention_equals_the_formula_written_out():
    model = tiny_model("gpt2", attention="sigmoid").eval()  # no rotary: q, k, v are plain projections
    attn = model.blocks[0].attn
    x = torch.randn(2, 6, 32)
    q, k, v = (t.view(2, 6, 4, 8).transpose(1, 2) for t in (x @ attn.c_attn.weight.t()).split(32, dim=-1))
    weights = torch.zeros(2, 4, 6, 6)
    for i in range(6):  # query i sees keys 0..i, with b = -log(i + 1)
        for j in range(i + 1):
            score = (q[:, :, i] * k[:, :, j]).sum(-1) / math.sqrt(8)
            weights[:, :, i, j] = torch.sigmoid(score - math.log(i + 1))
    expected = attn.c_proj((weights @ v).transpose(1, 2).reshape(2, 6, 32))
    torch.testing.assert_close(attn(x), expected)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("bias", ["-log(T)", "learned"])
def test_hook_pattern_gives_the_sigmoid_weights(name, bias):
    model = tiny_model(name, attention="sigmoid", sigmoid_bias=bias).eval()
    if bias == "learned":
        with torch.no_grad():
            model.blocks[1].attn.sigmoid_bias.copy_(torch.tensor([-1.0, -2.0, 0.5, 3.0]))
    idx = torch.randint(0, 97, (2, 7))
    _, cache = model.run_with_cache(idx)
    q, k = cache["blocks.1.attn.hook_q"], cache["blocks.1.attn.hook_k"]
    k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))
    if bias == "learned":
        b = torch.tensor([-1.0, -2.0, 0.5, 3.0])[:, None, None]
    else:
        b = -torch.log(torch.arange(1, 8, dtype=torch.float32))[:, None]
    expected = torch.sigmoid(scores + b) * torch.ones(7, 7).tril()
    torch.testing.assert_close(cache["blocks.1.attn.hook_pattern"], expected)
    assert (cache["blocks.1.attn.hook_pattern"].sum(-1) != 1).any()  # not normalized over keys


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("bias", ["-log(T)", "learned"])
def test_sigmoid_kv_cache_decoding_matches_recomputation(name, bias):
    model = tiny_model(name, block_size=16, attention="sigmoid", sigmoid_bias=bias).eval()
    prompt = torch.randint(0, 97, (2, 5))
    cached = model.generate(prompt, 20, temperature=0, use_cache=True)  # passes block_size too
    recomputed = model.generate(prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(cached, recomputed)
    # one step at a time through the cache equals the whole sequence at once
    idx = torch.randint(0, 97, (1, 9))
    full = model(idx)[0]
    caches = model.new_caches(1)
    steps = [model(idx[:, :4], caches=caches)[0]]
    steps += [model(idx[:, t : t + 1], start_pos=t, caches=caches)[0] for t in range(4, 9)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full)


def test_learned_bias_trains():
    model = tiny_model("reflow", attention="sigmoid", sigmoid_bias="learned").train()
    idx = torch.randint(0, 97, (2, 8))
    _, loss = model(idx, targets=idx)
    loss.backward()
    assert model.blocks[0].attn.sigmoid_bias.grad.abs().sum() > 0
    assert tiny_model("reflow", attention="sigmoid").num_params() + 2 * 4 == model.num_params()


def test_export_refuses_sigmoid_attention(tmp_path):
    pytest.importorskip("safetensors")
    from hf_export.model import export_hf

    with pytest.raises(UserError, match="sigmoid attention has no transformers equivalent"):
        export_hf(tiny_model("reflow", attention="sigmoid"), tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


def test_config_refuses_an_unknown_attention():
    with pytest.raises(UserError, match="attention must be 'softmax' or 'sigmoid', got 'linear'"):
        load_config(None, {"attention": "linear"})
    assert load_config(None, {"attention": "sigmoid"}).model_config().attention == "sigmoid"


def test_every_experiment_runs_on_a_sigmoid_attention_model(tmp_path, monkeypatch):
    import experiment_workspace

    import experiment
    from experiments.registry import EXPERIMENTS

    monkeypatch.setitem(experiment_workspace.SETTINGS, "attention", "sigmoid")
    config_file, cfg = experiment_workspace.make_run(tmp_path, "reflow")
    experiment.main([str(config_file), "--run", "all"])
    reports = sorted((tmp_path / "reflow" / "audit_reports").glob("[0-9][0-9]_*.json"))
    assert len(reports) == len(EXPERIMENTS)
