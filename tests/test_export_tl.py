"""The TransformerLens export computes our function: same logits and same activations at every hook
point we share with HookedTransformer, on all five architectures; what it cannot express is refused."""

import subprocess
import sys

import pytest
import torch
from conftest import scrambled, summation_tolerance

from core.checkpoint import save_checkpoint
from core.errors import UserError

pytest.importorskip("transformer_lens", reason='TransformerLens is an optional extra: pip install -e ".[tl]"')
import tl_export.model  # noqa: E402
from tl_export import export_tl, hooked_transformer, load_exported  # noqa: E402

CASES = [  # (architecture, overrides)
    ("gpt2", {}),
    ("gpt2", {"bias": True}),
    ("gpt2-new", {}),
    ("reflow", {}),
    ("reflow-topk", {}),
    ("reflow-lite", {}),  # grouped-query attention: 4 query heads share 2 key/value heads
]


def shared_points(model) -> dict[str, tuple[str, bool]]:
    """Our hook name -> (TransformerLens' name, whether its layout is ours with heads and positions
    swapped). See tl_export/model.py for why the names differ."""
    rotary = model.uses_rope
    points = {"hook_final": ("unembed.hook_in", False),
              "hook_embed": ("hook_embed" if rotary else "blocks.0.hook_resid_pre", False)}
    for layer in range(model.config.n_layer):
        p = f"blocks.{layer}."
        for name in ("hook_resid_pre", "hook_attn_out", "hook_resid_mid", "mlp.hook_post", "hook_mlp_out",
                     "hook_resid_post", "attn.hook_pattern"):
            points[p + name] = (p + name, False)
        for name in ("q", "k"):  # ours are after rotary: TransformerLens' hook_rot_q/k
            their_name = f"attn.hook_rot_{name}" if rotary else f"attn.hook_{name}"
            points[p + f"attn.hook_{name}"] = (p + their_name, True)
        points[p + "attn.hook_v"] = (p + "attn.hook_v", True)
    return points


def tolerance(model, reference: torch.Tensor) -> dict:
    """Each layer's longest sum is the MLP's hidden width (the largest contraction in these models);
    a reordering in one layer carries into the next, so the slack grows with depth."""
    cfg = model.config
    widest = max(cfg.n_embd, cfg.block_size, 4 * cfg.n_embd, cfg.swiglu_hidden, cfg.n_signals)
    return summation_tolerance(reference, cfg.n_layer * widest)


def assert_same_function(model, tl_model, idx):
    with torch.no_grad():
        ours, our_cache = model.run_with_cache(idx)
        theirs, their_cache = tl_model.run_with_cache(idx)
    torch.testing.assert_close(theirs, ours, **tolerance(model, ours))
    for name, (their_name, heads_first) in shared_points(model).items():
        expected = our_cache[name].transpose(1, 2) if heads_first else our_cache[name]
        torch.testing.assert_close(their_cache[their_name], expected, **tolerance(model, expected),
                                   msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("name,overrides", CASES)
def test_logits_and_every_shared_activation_match(name, overrides):
    model = scrambled(name, **overrides)
    idx = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))  # every position
    assert_same_function(model, hooked_transformer(model), idx)


def test_adjacent_rotary_pairs_are_what_make_rope_models_match(monkeypatch):
    """The check above can fail: TransformerLens' default rotary (halves, as GPT-NeoX) differs."""
    model = scrambled("reflow")
    real = tl_export.model.tl_config_args
    monkeypatch.setattr(tl_export.model, "tl_config_args",
                        lambda m: {**real(m), "rotary_adjacent_pairs": False})
    idx = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))
    with torch.no_grad():
        difference = (model(idx)[0] - hooked_transformer(model)(idx)).abs().max().item()
    assert difference > 1e-2


@pytest.mark.parametrize("overrides,named", [
    ({"attention": "sigmoid"}, "sigmoid attention"),
    ({"bias": True}, "gated MLP has no bias"),
])
def test_what_transformer_lens_cannot_express_is_refused(overrides, named):
    with pytest.raises(UserError, match=named):
        hooked_transformer(scrambled("reflow", **overrides))


def save_run(model, name: str, folder) -> None:
    save_checkpoint({"model": model.state_dict(), "model_args": {"model": name, **vars(model.config)},
                     "config": {"model": name}, "iter_num": 0}, folder / "ckpt.pt")


def run_script(*args):
    return subprocess.run([sys.executable, "export_tl.py", *map(str, args)], capture_output=True, text=True)


def test_script_writes_a_directory_transformer_lens_loads(tmp_path):
    """export_tl.py RUN writes RUN/tl; TransformerLens alone loads it back to the same function;
    a second export into it is refused and leaves it as it was."""
    model = scrambled("reflow-lite")
    save_run(model, "reflow-lite", tmp_path / "run")
    result = run_script(tmp_path / "run")
    assert result.returncode == 0, result.stderr
    out_dir = tmp_path / "run" / "tl"
    assert sorted(p.name for p in out_dir.iterdir()) == ["config.json", "model.pt"]
    idx = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))
    assert_same_function(model, load_exported(out_dir), idx)

    before = (out_dir / "model.pt").read_bytes()
    again = run_script(tmp_path / "run")
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "not empty" in again.stderr
    assert (out_dir / "model.pt").read_bytes() == before


def test_script_refuses_sigmoid_attention_in_one_line(tmp_path):
    model = scrambled("gpt2-new", attention="sigmoid")
    save_run(model, "gpt2-new", tmp_path / "run")
    result = run_script(tmp_path / "run", tmp_path / "tl")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: sigmoid attention") and result.stderr.count("\n") == 1
    assert not (tmp_path / "tl").exists()


def test_full_vocabulary_export_carries_gpt2_tokenizer(tmp_path):
    """A 50304-token model's export holds GPT-2's tokenizer files, and load_exported attaches them:
    to_tokens encodes as our tokenizer does."""
    pytest.importorskip("transformers")
    from core.tokenizer import encode

    model = scrambled("gpt2-new", vocab_size=50304, n_layer=1)
    export_tl(model, tmp_path / "tl")
    tl_model = load_exported(tmp_path / "tl")
    text = "Hello world, said the king."
    assert tl_model.to_tokens(text, prepend_bos=False)[0].tolist() == encode(text)
