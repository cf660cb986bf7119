"""Export a model as a Hugging Face transformers directory that loads with no custom code.

    AutoModelForCausalLM.from_pretrained(DIR)   # GPT2LMHeadModel or LlamaForCausalLM
    AutoTokenizer.from_pretrained(DIR)          # GPT-2's tokenizer, "Hello world" -> [15496, 995]

gpt2 becomes GPT2LMHeadModel. gpt2-new and the reflow family share LLaMA's block (RMSNorm, RoPE,
SwiGLU, optional GQA, tied embedding and head), so they become LlamaForCausalLM, with the vocab
matrix materialized as the tied embedding: W_recipe @ W_basis for reflow and reflow-lite, the
top-k recipes @ W_basis for reflow-topk. The export computes the same function (logits agree to
fp32 rounding, see tests/test_export_hf.py); the factorization itself is not kept, so recipe and
signal analyses stay with our checkpoints.

Three layout differences are converted here:
- HF GPT-2 uses Conv1D, whose weight is the transpose of nn.Linear's, and always has biases
  (written as zeros when our model has bias=False).
- Our RoPE rotates interleaved pairs (x[2i], x[2i+1]); HF Llama rotates halves (x[i], x[i + D/2]).
  Permuting the rows of the query and key projections within each head turns one into the other;
  attention scores are dot products, so they are unchanged.
- Our attention packs q, k, v in one c_attn Linear, and SwiGLU packs gate and up in one c_fc.
"""

import json
import os
import shutil
from pathlib import Path

import torch

from core.errors import UserError
from core.tokenizer import END_OF_TEXT_ID, GPT2_VOCAB_SIZE
from hf_export.tokenizer import tokenizer_files
from models import Transformer
from models.gpt2 import GPT2

LAYER_NORM_EPS = 1e-5  # models/layers.py LayerNorm, and HF GPT-2's default


def gpt2_tensors(model: GPT2) -> dict[str, torch.Tensor]:
    """Our GPT-2 weights under GPT2LMHeadModel's names and layout."""
    cfg = model.config
    if cfg.n_kv_head != cfg.n_head:
        raise UserError("HF GPT-2 has no grouped-query attention; export a gpt2 with n_kv_head = n_head")
    conv1d = lambda linear: linear.weight.t()  # Conv1D stores (in, out)
    bias = lambda module, size: module.bias if module.bias is not None else torch.zeros(size)
    C = cfg.n_embd
    tensors = {
        "transformer.wte.weight": model.wte.weight,
        "transformer.wpe.weight": model.wpe.weight,
        "transformer.ln_f.weight": model.ln_f.weight,
        "transformer.ln_f.bias": bias(model.ln_f, C),
    }
    for i, block in enumerate(model.blocks):
        p = f"transformer.h.{i}."
        tensors.update({
            p + "ln_1.weight": block.ln_1.weight,
            p + "ln_1.bias": bias(block.ln_1, C),
            p + "attn.c_attn.weight": conv1d(block.attn.c_attn),
            p + "attn.c_attn.bias": bias(block.attn.c_attn, 3 * C),
            p + "attn.c_proj.weight": conv1d(block.attn.c_proj),
            p + "attn.c_proj.bias": bias(block.attn.c_proj, C),
            p + "ln_2.weight": block.ln_2.weight,
            p + "ln_2.bias": bias(block.ln_2, C),
            p + "mlp.c_fc.weight": conv1d(block.mlp.c_fc),
            p + "mlp.c_fc.bias": bias(block.mlp.c_fc, 4 * C),
            p + "mlp.c_proj.weight": conv1d(block.mlp.c_proj),
            p + "mlp.c_proj.bias": bias(block.mlp.c_proj, C),
        })
    return tensors


def gpt2_config(model: GPT2) -> dict:
    cfg = model.config
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": 4 * cfg.n_embd,
        "activation_function": "gelu",  # exact erf GELU, as F.gelu; HF's "gelu_new" is the tanh one
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "tie_word_embeddings": True,
    }


def rope_halves(rows: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder each head's rows from interleaved pairs (2i, 2i+1) to halves (i, i + D/2)."""
    head_size = rows.size(0) // heads
    # Row 2i + j of a head goes to j * D/2 + i: even rows first, then odd rows.
    return rows.unflatten(0, (heads, head_size // 2, 2)).transpose(1, 2).flatten(0, 2)


def llama_tensors(model: Transformer) -> dict[str, torch.Tensor]:
    """A RoPE/SwiGLU/RMSNorm model's weights under LlamaForCausalLM's names and layout."""
    cfg = model.config
    C, kv_size = cfg.n_embd, cfg.n_kv_head * (cfg.n_embd // cfg.n_head)
    hidden = cfg.swiglu_hidden
    tensors = {
        "model.embed_tokens.weight": model.vocab_matrix(),  # also the head: tie_word_embeddings
        "model.norm.weight": model.ln_f.weight,
    }
    for i, block in enumerate(model.blocks):
        p = f"model.layers.{i}."
        attn, mlp = block.attn, block.mlp
        for kind in ("weight", "bias"):
            packed = getattr(attn.c_attn, kind)
            if packed is None:
                continue
            q, k, v = packed.split([C, kv_size, kv_size], dim=0)
            gate, up = getattr(mlp.c_fc, kind).split([hidden, hidden], dim=0)
            tensors.update({
                p + f"self_attn.q_proj.{kind}": rope_halves(q, cfg.n_head),
                p + f"self_attn.k_proj.{kind}": rope_halves(k, cfg.n_kv_head),
                p + f"self_attn.v_proj.{kind}": v,
                p + f"self_attn.o_proj.{kind}": getattr(attn.c_proj, kind),
                p + f"mlp.gate_proj.{kind}": gate,
                p + f"mlp.up_proj.{kind}": up,
                p + f"mlp.down_proj.{kind}": getattr(mlp.c_proj, kind),
            })
        tensors[p + "input_layernorm.weight"] = block.ln_1.weight
        tensors[p + "post_attention_layernorm.weight"] = block.ln_2.weight
    return tensors


def llama_config(model: Transformer) -> dict:
    cfg = model.config
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.swiglu_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.n_embd // cfg.n_head,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": model.ln_f.eps,
        # transformers < 5 reads rope_theta, transformers >= 5 reads rope_parameters.
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": cfg.bias,
        "mlp_bias": cfg.bias,
        "attention_dropout": cfg.dropout,
        "tie_word_embeddings": True,
    }


@torch.no_grad()
def export_hf(model: Transformer, out_dir: str | Path, dtype: torch.dtype = torch.float32) -> list[Path]:
    """Write `model` as a transformers model directory (config, safetensors weights, and GPT-2
    tokenizer files when the model's vocabulary covers GPT-2's). Returns the files written.

    `out_dir` must not exist or be empty: the directory is written beside it, then renamed into
    place, so a failed export never leaves a half-written model.
    """
    try:
        from safetensors.torch import save as safetensors_bytes
    except ImportError:
        raise UserError("export needs the safetensors package: pip install safetensors transformers")
    if model.config.attention != "softmax":
        raise UserError(f"{model.config.attention} attention has no transformers equivalent (GPT-2 and "
                        "Llama use softmax attention); only softmax-attention models can be exported")
    out_dir = Path(os.path.abspath(out_dir))  # "." and "a/.." get a name to stage beside
    check_new_directory(out_dir)

    is_gpt2 = isinstance(model, GPT2)
    tensors = gpt2_tensors(model) if is_gpt2 else llama_tensors(model)
    # safetensors refuses views that share storage (q, k, v are slices of one weight): copy each.
    tensors = {name: t.detach().to(dtype).contiguous().clone() for name, t in tensors.items()}
    config = gpt2_config(model) if is_gpt2 else llama_config(model)
    config["torch_dtype"] = str(dtype).removeprefix("torch.")
    files = {}
    if model.config.vocab_size >= GPT2_VOCAB_SIZE:
        # <|endoftext|> ends documents and, in the chat template, assistant turns: generation stops there.
        special = {"bos_token_id": END_OF_TEXT_ID, "eos_token_id": END_OF_TEXT_ID}
        config.update(special)
        files["generation_config.json"] = json.dumps(special, indent=2) + "\n"
        files.update(tokenizer_files(model.config.block_size))
    else:  # a toy vocabulary (tests): no GPT-2 ids fit, and GPT2Config would default them to 50256
        config.update({"bos_token_id": None, "eos_token_id": None})
    files["config.json"] = json.dumps(config, indent=2) + "\n"

    files["model.safetensors"] = safetensors_bytes(tensors, metadata={"format": "pt"})
    write_directory(files, out_dir)
    return sorted(out_dir.iterdir())


def check_new_directory(out_dir: Path) -> None:
    """Refuse, in one line, an export directory that is a file, is not empty, or cannot be made;
    create its parent, so that write_directory can stage beside it."""
    here = Path.cwd().resolve()
    if out_dir.resolve() in (here, *here.parents):  # renaming over it would pull the folder from under us
        raise UserError(f"cannot export into the current folder or one above it ({out_dir}); name a new "
                        "directory, e.g. hf_model")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file; choose a new directory")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir} already exists and is not empty; choose a new directory")
    in_the_way = next((p for p in out_dir.parents if p.exists() and not p.is_dir()), None)
    if in_the_way is not None:  # e.g. README.md/model
        raise UserError(f"cannot export to {out_dir}: {in_the_way} is a file, not a directory")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create {out_dir} ({error.strerror or error}); choose another directory")


def write_directory(files: dict[str, str | bytes], out_dir: Path) -> None:
    """Write `files` into a staging directory beside `out_dir` (named for this process, so it is
    never someone else's), then rename it into place (over `out_dir` if that is empty): a failed
    export leaves nothing behind, and removes nothing it did not create."""
    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.partial")
    try:
        staging.mkdir()
    except OSError as error:
        raise UserError(f"cannot create {staging} to export into ({error.strerror or error}); "
                        "choose another directory")
    try:
        for name, content in files.items():
            if isinstance(content, bytes):
                (staging / name).write_bytes(content)
            else:
                (staging / name).write_text(content, encoding="utf-8")
        os.replace(staging, out_dir)  # a directory may replace an empty one
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)  # ours: created just above
        if isinstance(error, OSError):  # a full disk, a quota, out_dir filled meanwhile
            raise UserError(f"could not write {out_dir} ({error.strerror or error}); nothing was written")
        raise
