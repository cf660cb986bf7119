"""Export a checkpoint as a Hugging Face transformers model directory (no custom code needed).

    python export_hf.py out/shakespeare_reflow out/shakespeare_reflow_hf
    python export_hf.py out/reflow_1/ckpt.pt hf/reflow_1 --dtype=bfloat16

Then, anywhere transformers is installed:

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("out/shakespeare_reflow_hf")
    tokenizer = AutoTokenizer.from_pretrained("out/shakespeare_reflow_hf")

gpt2 loads as GPT2LMHeadModel, the other four as LlamaForCausalLM; see core/export_hf.py.
"""

import sys

import torch

from core.checkpoint import load_checkpoint, model_from_checkpoint, model_name_of
from core.errors import UserError, exit_on_user_error
from core.export_hf import export_hf

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
USAGE = "usage: python export_hf.py CHECKPOINT OUT_DIR [--dtype=float32|bfloat16|float16]"


@exit_on_user_error
def main(argv: list[str]) -> None:
    paths = [a for a in argv if not a.startswith("--")]
    options = dict(a[2:].partition("=")[::2] for a in argv if a.startswith("--"))
    if len(paths) != 2 or set(options) - {"dtype"}:
        raise UserError(USAGE)
    dtype = options.get("dtype", "float32")
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    checkpoint_arg, out_dir = paths
    checkpoint = load_checkpoint(checkpoint_arg)
    model = model_from_checkpoint(checkpoint)
    files = export_hf(model, out_dir, DTYPES[dtype])
    kind = "GPT2LMHeadModel" if model_name_of(checkpoint) == "gpt2" else "LlamaForCausalLM"
    print(f"exported {model_name_of(checkpoint)} ({model.num_params() / 1e6:.2f}M params) "
          f"as {kind} to {out_dir}: {', '.join(f.name for f in files)}")
    if not any(f.name == "vocab.json" for f in files):
        print(f"no tokenizer written: the model's {model.config.vocab_size} tokens do not cover GPT-2's")


if __name__ == "__main__":
    main(sys.argv[1:])
