"""Each architecture computes what its equations say, on random weights at a tiny size."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config, tiny_model

from models import MODELS, build_model


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_backward_on_cpu(name):
    model = tiny_model(name)
    idx = torch.randint(0, 97, (2, 16))
    logits, loss = model(idx, targets=idx)
    assert logits.shape == (2, 16, 97)
    assert loss.item() == pytest.approx(math.log(97), rel=0.2)  # near uniform at init
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_reflow_equals_explicit_factorized_vocabulary():
    model = tiny_model("reflow")
    idx = torch.randint(0, 97, (2, 10))
    vocab = model.recipe @ model.basis  # E = W_recipe @ W_basis, (V, C)
    x = vocab[idx]  # explicit lookup
    for block in model.blocks:  # the shared gpt2-new backbone
        x = block(x)
    expected = model.ln_f(x) @ vocab.t()  # matmul with its transpose: no separate head
    logits, _ = model(idx)
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.vocab_matrix(), vocab)


def test_reflow_topk_keeps_exactly_k_and_blocks_other_gradients():
    model = tiny_model("reflow-topk", n_signals=16, topk=4)
    with torch.no_grad():  # every row has more than k positive entries, so exactly k survive
        model.recipe.copy_(torch.rand_like(model.recipe) + 0.01)
        model.recipe[:, :3] *= -1
    recipe = model.effective_recipe()
    assert ((recipe != 0).sum(dim=1) == 4).all()
    kept = recipe != 0
    expected_kept = torch.zeros_like(kept).scatter_(1, model.recipe.topk(4, dim=1).indices, True)
    assert torch.equal(kept, expected_kept)

    idx = torch.randint(0, 97, (2, 8))
    _, loss = model(idx, targets=idx)
    loss.backward()
    grad = model.recipe.grad
    assert (grad[~kept] == 0).all()
    assert (grad[kept] != 0).any()


def test_reflow_lite_equals_full_attention_with_repeated_kv_heads():
    lite = tiny_model("reflow-lite", n_head=4, n_kv_head=2)
    full = build_model("reflow", tiny_config(n_head=4))
    head = 32 // 4
    state = dict(lite.state_dict())
    for layer in range(2):
        key = f"blocks.{layer}.attn.c_attn.weight"
        q, k, v = state[key].split([32, 2 * head, 2 * head], dim=0)
        # each key/value head serves n_head / n_kv_head = 2 consecutive query heads
        k = k.view(2, head, 32).repeat_interleave(2, dim=0).reshape(4 * head, 32)
        v = v.view(2, head, 32).repeat_interleave(2, dim=0).reshape(4 * head, 32)
        state[key] = torch.cat([q, k, v])
    full.load_state_dict(state)
    idx = torch.randint(0, 97, (2, 12))
    torch.testing.assert_close(lite(idx)[0], full(idx)[0], rtol=1e-5, atol=1e-5)


def reference_gpt2(model, idx):
    """GPT-2 written out from its equations with the model's weights and nothing else."""
    sd = model.state_dict()
    C, H = model.config.n_embd, model.config.n_head
    T = idx.size(1)

    def layer_norm(x, prefix):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + 1e-5) * sd[prefix + ".weight"]

    def gelu(x):  # the exact (erf) GELU
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))

    x = sd["wte.weight"][idx] + sd["wpe.weight"][:T]
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for layer in range(model.config.n_layer):
        p = f"blocks.{layer}."
        a = layer_norm(x, p + "ln_1") @ sd[p + "attn.c_attn.weight"].t()
        q, k, v = (t.view(*t.shape[:2], H, C // H).transpose(1, 2) for t in a.split(C, dim=2))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(C // H)
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        y = (weights @ v).transpose(1, 2).reshape(x.shape)
        x = x + y @ sd[p + "attn.c_proj.weight"].t()
        h = gelu(layer_norm(x, p + "ln_2") @ sd[p + "mlp.c_fc.weight"].t())
        x = x + h @ sd[p + "mlp.c_proj.weight"].t()
    return layer_norm(x, "ln_f") @ sd["wte.weight"].t()


def test_gpt2_equals_reference_equations():
    model = tiny_model("gpt2")
    idx = torch.randint(0, 97, (2, 16))
    torch.testing.assert_close(model(idx)[0], reference_gpt2(model, idx), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_kv_cache_decoding_matches_recomputation(name):
    model = tiny_model(name, block_size=16).eval()
    prompt = torch.randint(0, 97, (2, 5))
    # 20 new tokens pass block_size, so the sliding-window fallback is exercised too.
    cached = model.generate(prompt, 20, temperature=0, use_cache=True)
    recomputed = model.generate(prompt, 20, temperature=0, use_cache=False)
    assert torch.equal(cached, recomputed)


@pytest.mark.parametrize("name", list(MODELS))
def test_hooks_read_and_replace_the_residual_stream(name):
    model = tiny_model(name).eval()
    idx = torch.randint(0, 97, (1, 8))
    states = model.hidden_states(idx)
    assert len(states) == model.config.n_layer + 1
    logits, cache = model.run_with_cache(idx)
    assert torch.equal(cache[model.resid_hook(1)], states[-1])
    expected = model.unembed(model.ln_f(states[-1]), model.shared_vocab_weights())
    torch.testing.assert_close(logits, expected)

    with model.hooks({model.resid_hook(0): lambda x: torch.zeros_like(x)}):
        zeroed, _ = model(idx)
    assert not torch.allclose(zeroed, logits)
    with model.hooks({model.resid_hook(0): lambda x: None}):  # returning None changes nothing
        same, _ = model(idx)
    torch.testing.assert_close(same, logits)
    with pytest.raises(KeyError, match="unknown hook point"):
        with model.hooks({"blocks.9.nope": lambda x: x}):
            pass


def test_swiglu_hidden_is_a_multiple_of_256():
    cfg = tiny_config(n_embd=1024, n_head=16, swiglu_multiple_of=256)
    assert cfg.swiglu_hidden == 2816
    assert tiny_config(n_embd=512, n_head=8, swiglu_multiple_of=256).swiglu_hidden == 1536


def test_cross_entropy_ignores_minus_one_targets():
    model = tiny_model("reflow")
    idx = torch.randint(0, 97, (1, 8))
    targets = idx.clone()
    targets[:, :4] = -1
    logits, loss = model(idx, targets=targets)
    expected = F.cross_entropy(logits[0, 4:], idx[0, 4:])
    torch.testing.assert_close(loss, expected)
