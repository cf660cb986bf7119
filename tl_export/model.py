"""Build a TransformerLens HookedTransformer that computes the same function as one of our models.

    from tl_export import hooked_transformer
    tl_model = hooked_transformer(model)          # our Transformer -> transformer_lens.HookedTransformer
    logits, cache = tl_model.run_with_cache(idx)  # same logits and activations as ours

gpt2 maps to TransformerLens' GPT-2 layout (LayerNorm, learned positions, GELU MLP). gpt2-new and the
reflow family map to its LLaMA layout: RMSNorm, rotary positions, gated SiLU MLP, grouped-query
attention when n_kv_head < n_head. The vocab matrix is materialized into W_E and W_U (= W_E^T):
W_recipe @ W_basis for reflow and reflow-lite, the top-k recipes @ W_basis for reflow-topk. The
exported model computes the same function (tests/test_export_tl.py checks logits and every
activation); the factorization itself is not kept, so recipe and signal analyses stay with ours.

Layout differences converted here:
- TransformerLens stores per-head weights: W_Q (H, C, D), W_K and W_V (K, C, D), W_O (H, D, C);
  ours pack q, k, v in one c_attn Linear (out, in). Our SwiGLU packs gate and up in one c_fc.
- Our RoPE rotates interleaved pairs (x[2i], x[2i+1]); TransformerLens does the same with
  rotary_adjacent_pairs=True, so no permutation is needed (unlike the HF export).
- TransformerLens' LayerNorm always has a bias: written as zeros when ours has bias=False.

What TransformerLens cannot express is refused (`untranslatable`): sigmoid attention (its attention
is softmax), and biases in a gated MLP (its gated MLP has no bias on the gate and up projections).

Hook names match, with these differences (ours -> TransformerLens'):
- `blocks.{L}.attn.hook_q/hook_k` (B, heads, T, D), after rotary -> `hook_rot_q/hook_rot_k`
  (B, T, heads, D); TransformerLens' hook_q/hook_k are before rotary. hook_v is (B, T, K, D) there.
- `hook_final` (after the final norm's gain) -> `unembed.hook_in`.
- gpt2's `hook_embed` (token + position) -> `blocks.0.hook_resid_pre`.
"""

import io
import json
import os
import warnings
from pathlib import Path

import torch

from core.errors import UserError
from core.tokenizer import GPT2_VOCAB_SIZE
from hf_export.model import LAYER_NORM_EPS, check_new_directory, write_directory
from hf_export.tokenizer import tokenizer_files
from models import Transformer
from models.gpt2 import GPT2


def untranslatable(model: Transformer) -> str | None:
    """Why TransformerLens cannot compute this model's function, in one line; None if it can."""
    cfg = model.config
    if cfg.attention != "softmax":
        return (f"{cfg.attention} attention has no TransformerLens equivalent (HookedTransformer's "
                "attention is softmax); only softmax-attention models can be exported")
    if cfg.bias and not isinstance(model, GPT2):
        return ("TransformerLens' gated MLP has no bias on its gate and up projections, and this model "
                "has bias=True; only bias=False SwiGLU models can be exported")
    return None


def tl_config_args(model: Transformer) -> dict:
    """HookedTransformerConfig's keyword arguments for `model`'s architecture (plain JSON values)."""
    cfg = model.config
    head_size = cfg.n_embd // cfg.n_head
    common = dict(
        model_name=type(model).__name__,
        d_model=cfg.n_embd, d_head=head_size, n_layers=cfg.n_layer, n_ctx=cfg.block_size,
        n_heads=cfg.n_head, d_vocab=cfg.vocab_size,
        default_prepend_bos=False,  # our models were trained without a BOS token
    )
    if isinstance(model, GPT2):
        return dict(common, d_mlp=4 * cfg.n_embd, act_fn="gelu",  # exact erf GELU, as F.gelu
                    normalization_type="LN", eps=LAYER_NORM_EPS,
                    positional_embedding_type="standard",
                    n_key_value_heads=cfg.n_kv_head if cfg.n_kv_head != cfg.n_head else None)
    return dict(common, d_mlp=cfg.swiglu_hidden, act_fn="silu", gated_mlp=True,
                normalization_type="RMS", final_rms=True, eps=model.ln_f.eps,
                positional_embedding_type="rotary", rotary_dim=head_size, rotary_base=cfg.rope_theta,
                rotary_adjacent_pairs=True,
                n_key_value_heads=cfg.n_kv_head if cfg.n_kv_head != cfg.n_head else None)


def per_head(rows: torch.Tensor, heads: int) -> torch.Tensor:
    """A Linear's output rows (heads * D, C) as TransformerLens' input-major per-head (heads, C, D)."""
    return rows.unflatten(0, (heads, -1)).transpose(1, 2)


def tl_state_dict(model: Transformer) -> dict[str, torch.Tensor]:
    """Our weights under HookedTransformer's names and layout (its parameters; buffers it builds)."""
    cfg = model.config
    H, K, C = cfg.n_head, cfg.n_kv_head, cfg.n_embd
    D = C // H
    gqa = "_" if K != H else ""  # GroupedQueryAttention stores K/V heads as _W_K, _W_V
    zeros = lambda size: torch.zeros(size)
    bias = lambda linear, size: linear.bias if linear.bias is not None else zeros(size)
    vocab = model.vocab_matrix()  # (V, C): embeds tokens and, transposed, scores them
    state = {"embed.W_E": vocab, "unembed.W_U": vocab.t(), "unembed.b_U": zeros(cfg.vocab_size),
             "ln_final.w": model.ln_f.weight}
    layer_norm = isinstance(model, GPT2)
    if layer_norm:
        state["pos_embed.W_pos"] = model.wpe.weight
        state["ln_final.b"] = bias(model.ln_f, C)
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}."
        attn, mlp = block.attn, block.mlp
        q, k, v = attn.c_attn.weight.split([C, K * D, K * D], dim=0)
        q_bias, k_bias, v_bias = bias(attn.c_attn, C + 2 * K * D).split([C, K * D, K * D])
        state.update({
            p + "ln1.w": block.ln_1.weight, p + "ln2.w": block.ln_2.weight,
            p + "attn.W_Q": per_head(q, H), p + f"attn.{gqa}W_K": per_head(k, K),
            p + f"attn.{gqa}W_V": per_head(v, K),
            p + "attn.b_Q": q_bias.view(H, D), p + f"attn.{gqa}b_K": k_bias.view(K, D),
            p + f"attn.{gqa}b_V": v_bias.view(K, D),
            p + "attn.W_O": attn.c_proj.weight.t().view(H, D, C), p + "attn.b_O": bias(attn.c_proj, C),
            p + "mlp.W_out": mlp.c_proj.weight.t(), p + "mlp.b_out": bias(mlp.c_proj, C),
        })
        if layer_norm:
            state.update({p + "ln1.b": bias(block.ln_1, C), p + "ln2.b": bias(block.ln_2, C),
                          p + "mlp.W_in": mlp.c_fc.weight.t(), p + "mlp.b_in": bias(mlp.c_fc, 4 * C)})
        else:  # SwiGLU: silu(x W_gate) * (x W_in); untranslatable() refused biases here
            gate, up = mlp.c_fc.weight.chunk(2, dim=0)
            state.update({p + "mlp.W_gate": gate.t(), p + "mlp.W_in": up.t(),
                          p + "mlp.b_in": zeros(cfg.swiglu_hidden)})
    return {name: t.detach().float().contiguous().clone() for name, t in state.items()}


def new_hooked_transformer(config_args: dict, tokenizer=None):
    """HookedTransformer(HookedTransformerConfig(**config_args)), randomly initialized, on CPU."""
    try:
        import transformer_lens
    except ImportError:
        raise UserError('the TransformerLens export needs transformer_lens: pip install -e ".[tl]"')
    cfg = transformer_lens.HookedTransformerConfig(**config_args)
    with warnings.catch_warnings():
        # TransformerLens 3.x announces HookedTransformer's move to TransformerBridge in 4.0; SAELens
        # pins transformer-lens < 4, and HookedTransformer is what it and most analysis code take.
        warnings.filterwarnings("ignore", "HookedTransformer is deprecated", DeprecationWarning)
        return transformer_lens.HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)


@torch.no_grad()
def hooked_transformer(model: Transformer, tokenizer=None):
    """A transformer_lens.HookedTransformer (float32, eval mode, on CPU) computing `model`'s function.

    Raises UserError when TransformerLens is not installed or cannot express the model. `tokenizer`
    (a Hugging Face tokenizer) is attached for to_tokens/to_string; without one the model takes ids.
    """
    reason = untranslatable(model)
    if reason is not None:
        raise UserError(reason)
    tl_model = new_hooked_transformer(tl_config_args(model), tokenizer)
    theirs = tl_model.state_dict()
    ours = tl_state_dict(model)
    unexpected = sorted(set(ours) - set(theirs))
    assert not unexpected, f"HookedTransformer has no {unexpected}"
    # Every parameter comes from us; what remains are buffers TransformerLens derives from the config
    # (rotary tables, masks, the -inf that hides future keys).
    missing = [n for n, _ in tl_model.named_parameters() if n not in ours]
    assert not missing, f"no weights for {missing}"
    tl_model.load_state_dict(ours, strict=False)
    return tl_model.eval()


CONFIG_FILE = "config.json"  # HookedTransformerConfig's keyword arguments
WEIGHTS_FILE = "model.pt"  # HookedTransformer's state_dict, loadable with torch.load(weights_only=True)


@torch.no_grad()
def export_tl(model: Transformer, out_dir: str | Path) -> list[Path]:
    """Write `model` as a directory TransformerLens alone can load (see `load_exported`): config.json,
    model.pt, and GPT-2's tokenizer files when the vocabulary covers GPT-2's. Returns the files.

    `out_dir` must not exist or be empty; it is written beside and renamed into place, so a failed
    export leaves nothing half-written.
    """
    out_dir = Path(os.path.abspath(out_dir))  # "." and "a/.." get a name to stage beside
    check_new_directory(out_dir)
    tl_model = hooked_transformer(model)
    weights = io.BytesIO()
    torch.save(tl_model.state_dict(), weights)
    files = {CONFIG_FILE: json.dumps(tl_config_args(model), indent=2) + "\n",
             WEIGHTS_FILE: weights.getvalue()}
    if model.config.vocab_size >= GPT2_VOCAB_SIZE:
        files.update(tokenizer_files(model.config.block_size))
    write_directory(files, out_dir)
    return sorted(out_dir.iterdir())


def load_exported(out_dir: str | Path):
    """The HookedTransformer that export_tl wrote to `out_dir`, with its tokenizer when one was
    written. Only TransformerLens (and transformers, for the tokenizer) is needed, as in:

        cfg = HookedTransformerConfig(**json.load(open(f"{out_dir}/config.json")))
        model = HookedTransformer(cfg)
        model.load_state_dict(torch.load(f"{out_dir}/model.pt", weights_only=True))
    """
    out_dir = Path(out_dir)
    tokenizer = None
    if (out_dir / "vocab.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(out_dir)
    tl_model = new_hooked_transformer(json.loads((out_dir / CONFIG_FILE).read_text()), tokenizer)
    tl_model.load_state_dict(torch.load(out_dir / WEIGHTS_FILE, weights_only=True))
    return tl_model.eval()
