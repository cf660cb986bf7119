"""The Hugging Face export computes our function: same logits in fp32, same token ids, same greedy text."""

import subprocess
import sys

import pytest
import torch
from conftest import scrambled, tiny_model

from core.checkpoint import save_checkpoint
from core.errors import UserError
from core.tokenizer import encode
from hf_export.model import export_hf

transformers = pytest.importorskip("transformers")
AutoModelForCausalLM, AutoTokenizer = transformers.AutoModelForCausalLM, transformers.AutoTokenizer

CASES = [  # (architecture, overrides, transformers class it must load as)
    ("gpt2", {}, "GPT2LMHeadModel"),
    ("gpt2", {"bias": True}, "GPT2LMHeadModel"),
    ("gpt2-new", {}, "LlamaForCausalLM"),
    ("gpt2-new", {"bias": True, "n_kv_head": 2}, "LlamaForCausalLM"),
    ("reflow", {}, "LlamaForCausalLM"),
    ("reflow-topk", {}, "LlamaForCausalLM"),
    ("reflow-lite", {}, "LlamaForCausalLM"),
]


def max_logit_difference(model, hf_dir, idx) -> float:
    hf_model, info = AutoModelForCausalLM.from_pretrained(hf_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    with torch.no_grad():
        ours, _ = model(idx)
        theirs = hf_model.eval()(idx).logits
    return (ours - theirs).abs().max().item()


@pytest.mark.parametrize("name,overrides,hf_class", CASES)
def test_exported_logits_match(tmp_path, name, overrides, hf_class):
    model = scrambled(name, **overrides)
    export_hf(model, tmp_path / "hf")
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")  # no trust_remote_code
    assert type(hf_model).__name__ == hf_class
    idx = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))  # every position
    assert max_logit_difference(model, tmp_path / "hf", idx) < 1e-4


def test_rope_permutation_is_what_makes_llama_match(tmp_path, monkeypatch):
    """The check above can fail: exporting q/k rows unpermuted gives visibly different logits."""
    import hf_export.model

    model = scrambled("gpt2-new")
    monkeypatch.setattr(hf_export.model, "rope_halves", lambda rows, heads: rows)
    export_hf(model, tmp_path / "hf")
    idx = torch.randint(0, model.config.vocab_size, (2, model.config.block_size))
    assert max_logit_difference(model, tmp_path / "hf", idx) > 1e-2


def test_full_vocab_export_with_tokenizer_generates_our_text(tmp_path):
    """A 50304-token reflow exported by the script: the GPT-2 tokenizer loads beside it, encodes as
    ours does, and greedy generation by transformers continues a prompt exactly as ours does."""
    model = scrambled("reflow", vocab_size=50304, n_layer=1)
    ckpt = tmp_path / "run" / "ckpt.pt"
    save_checkpoint({"model": model.state_dict(), "model_args": vars(model.config),
                     "config": {"model": "reflow"}, "iter_num": 0}, ckpt)
    result = subprocess.run([sys.executable, "export_hf.py", str(ckpt.parent), str(tmp_path / "hf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "as LlamaForCausalLM" in result.stdout

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert tokenizer("Hello world")["input_ids"] == [15496, 995]
    text = ("ROMEO:\nBut, soft! what light through yonder window breaks?\n\n\t  Naïve café, 日本語, 🤖; "
            "don't we'll   $1,234.50<|endoftext|>")
    assert tokenizer(text)["input_ids"] == encode(text)
    assert tokenizer.decode(encode(text)) == text

    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    prompt = torch.tensor([encode("To be, or not to be")])
    ours = model.generate(prompt, max_new_tokens=8, temperature=0)
    theirs = hf_model.generate(prompt, max_new_tokens=8, do_sample=False, eos_token_id=None,
                               attention_mask=torch.ones_like(prompt))
    assert theirs.tolist() == ours.tolist()


def test_export_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        export_hf(tiny_model("gpt2"), tmp_path / "hf")
    assert (tmp_path / "hf" / "keep.txt").read_text() == "mine"


def test_script_reports_a_missing_checkpoint_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "export_hf.py", str(tmp_path / "nope"), str(tmp_path / "hf")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: no checkpoint at") and result.stderr.count("\n") == 1
    assert not (tmp_path / "hf").exists()
