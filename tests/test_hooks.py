"""The hook interface: names passed to hook functions, names_filter, stop_at_layer, and the points
inside attention and the MLP, each checked against the quantity computed longhand."""

import math

import pytest
import torch
from conftest import tiny_model

from models import MODELS


def test_one_function_serves_many_points_and_receives_each_name():
    model = tiny_model("reflow").eval()
    idx = torch.randint(0, 97, (1, 6))
    names = ["hook_embed", "blocks.0.attn.hook_q", "blocks.1.mlp.hook_post", "hook_final"]
    seen = []

    def record(activation, hook):
        seen.append((hook.name, activation.shape))

    with model.hooks({name: record for name in names}):
        model(idx)
    assert [name for name, _ in seen] == names  # the order the forward reaches them
    assert dict(seen)["blocks.0.attn.hook_q"] == (1, 4, 6, 8)  # (B, H, T, D)


def test_names_filter_takes_a_list_a_name_or_a_predicate():
    model = tiny_model("gpt2-new").eval()
    idx = torch.randint(0, 97, (1, 6))
    _, cache = model.run_with_cache(idx, lambda name: name.endswith("hook_resid_post"))
    assert sorted(cache) == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    _, cache = model.run_with_cache(idx, "hook_final")
    assert list(cache) == ["hook_final"]
    with pytest.raises(KeyError, match="unknown hook point"):
        model.run_with_cache(idx, ["blocks.0.hook_nope"])


@pytest.mark.parametrize("name", list(MODELS))
def test_stop_at_layer_returns_the_residual_stream_and_runs_nothing_after(name):
    model = tiny_model(name, n_layer=3).eval()
    idx = torch.randint(0, 97, (2, 7))
    _, full = model.run_with_cache(idx)
    out, cache = model.run_with_cache(idx, stop_at_layer=1)
    assert torch.equal(out, full["blocks.0.hook_resid_post"])
    assert "blocks.0.mlp.hook_post" in cache
    assert not [n for n in cache if n.startswith(("blocks.1.", "blocks.2.")) or n == "hook_final"]
    out_negative, _ = model.run_with_cache(idx, [], stop_at_layer=-1)  # all but the last layer
    assert torch.equal(out_negative, full["blocks.1.hook_resid_post"])
    embedding_only, _ = model.run_with_cache(idx, [], stop_at_layer=0)
    assert torch.equal(embedding_only, full["hook_embed"])


@pytest.mark.parametrize("name", list(MODELS))
def test_hook_pattern_is_the_softmax_of_scaled_scores_under_the_causal_mask(name):
    model = tiny_model(name).eval()
    idx = torch.randint(0, 97, (2, 9))
    logits = model(idx)[0]
    p = "blocks.1.attn."
    logits_read, cache = model.run_with_cache(idx)
    assert torch.equal(logits_read, logits)  # reading the pattern leaves the output SDPA's, exactly
    q, k = cache[p + "hook_q"], cache[p + "hook_k"]  # (B, H, T, D), (B, K, T, D)
    k = k.repeat_interleave(q.size(1) // k.size(1), dim=1)
    T, D = q.size(2), q.size(3)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)
    mask = torch.full((T, T), float("-inf")).triu(1)  # -inf above the diagonal: future keys
    torch.testing.assert_close(cache[p + "hook_pattern"], torch.softmax(scores + mask, dim=-1))


def test_gpt2_queries_and_keys_are_the_projections_of_the_normed_input():
    model = tiny_model("gpt2").eval()  # no rotary: q and k are plain projections
    idx = torch.randint(0, 97, (1, 5))
    _, cache = model.run_with_cache(idx)
    block = model.blocks[0]
    x = block.ln_1(cache["blocks.0.hook_resid_pre"])
    q, k, v = (x @ block.attn.c_attn.weight.t()).split(32, dim=-1)
    heads = lambda t: t.view(1, 5, 4, 8).transpose(1, 2)  # noqa: E731
    for name, expected in (("hook_q", q), ("hook_k", k), ("hook_v", v)):
        torch.testing.assert_close(cache[f"blocks.0.attn.{name}"], heads(expected))


@pytest.mark.parametrize("name", list(MODELS))
def test_editing_the_pattern_changes_the_output_as_the_edit_says(name):
    model = tiny_model(name).eval()
    idx = torch.randint(0, 97, (1, 6))
    _, cache = model.run_with_cache(idx)
    attn = model.blocks[0].attn
    # Every query attends only to itself: the attention output is c_proj of its own value.
    only_self = lambda pattern: torch.eye(6).expand_as(pattern).clone()  # noqa: E731
    with model.hooks({"blocks.0.attn.hook_pattern": only_self}):
        _, edited = model.run_with_cache(idx, ["blocks.0.hook_attn_out", "blocks.0.attn.hook_v"])
    v = edited["blocks.0.attn.hook_v"].repeat_interleave(attn.n_head // attn.n_kv_head, dim=1)
    expected = attn.c_proj(v.transpose(1, 2).reshape(1, 6, 32))
    torch.testing.assert_close(edited["blocks.0.hook_attn_out"], expected)
    assert not torch.allclose(edited["blocks.0.hook_attn_out"], cache["blocks.0.hook_attn_out"])

    def halve_in_place(pattern):  # an in-place edit counts as an edit too
        pattern.mul_(0.5)

    with model.hooks({"blocks.0.attn.hook_pattern": halve_in_place}):
        _, halved = model.run_with_cache(idx, ["blocks.0.hook_attn_out"])
    bias = attn.c_proj.bias if attn.c_proj.bias is not None else 0
    torch.testing.assert_close(halved["blocks.0.hook_attn_out"] - bias,
                               0.5 * (cache["blocks.0.hook_attn_out"] - bias))


@pytest.mark.parametrize("name", list(MODELS))
def test_mlp_hook_post_is_the_hidden_activation(name):
    model = tiny_model(name).eval()
    idx = torch.randint(0, 97, (2, 7))
    _, cache = model.run_with_cache(idx)
    block = model.blocks[1]
    x = block.ln_2(cache["blocks.1.hook_resid_mid"])
    pre = x @ block.mlp.c_fc.weight.t()
    if name == "gpt2":  # GELU(x W_fc)
        expected = 0.5 * pre * (1 + torch.erf(pre / math.sqrt(2)))
    else:  # SwiGLU: silu(x W_gate) * (x W_up)
        gate, up = pre.chunk(2, dim=-1)
        expected = gate * torch.sigmoid(gate) * up
    torch.testing.assert_close(cache["blocks.1.mlp.hook_post"], expected)
    # and it is what the MLP's output projection reads
    hidden = cache["blocks.1.mlp.hook_post"]
    torch.testing.assert_close(block.mlp.c_proj(hidden), cache["blocks.1.hook_mlp_out"])


def test_recording_without_detach_lets_a_penalty_on_patterns_train():
    model = tiny_model("reflow").train()
    idx = torch.randint(0, 97, (2, 8))
    with model.recording(lambda n: n.endswith("hook_pattern"), detach=False) as acts:
        _, loss = model(idx, targets=idx)
    penalty = sum(pattern.pow(2).mean() for pattern in acts.values())
    assert len(acts) == model.config.n_layer
    grad = torch.autograd.grad(penalty, model.blocks[0].attn.c_attn.weight)[0]
    assert grad.abs().sum() > 0
    with model.recording("hook_final") as acts:
        model(idx)
    assert not acts["hook_final"].requires_grad  # detached by default


def test_hidden_states_skip_the_readout():
    model = tiny_model("gpt2").eval()
    calls = []
    model.unembed = lambda h, shared: calls.append(h) or h
    model.hidden_states(torch.randint(0, 97, (1, 4)))
    assert not calls


@pytest.mark.parametrize("name", ["gpt2", "reflow-lite"])
def test_written_out_softmax_attention_matches_the_kv_cache(name):
    """The written-out path (taken under an editing hook) masks cached keys as SDPA does."""
    model = tiny_model(name, block_size=16).eval()
    prompt = torch.randint(0, 97, (2, 5))
    sharpen = lambda pattern: pattern.pow(2) / pattern.pow(2).sum(-1, keepdim=True)  # noqa: E731
    edits = {f"blocks.{i}.attn.hook_pattern": sharpen for i in range(2)}
    with model.hooks(edits):
        cached = model.generate(prompt, 14, temperature=0, use_cache=True)
        recomputed = model.generate(prompt, 14, temperature=0, use_cache=False)
        edited = model(cached[:, -16:])[0]
    assert torch.equal(cached, recomputed)
    assert not torch.allclose(edited, model(cached[:, -16:])[0])  # the edit mattered
