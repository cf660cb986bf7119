"""Export a checkpoint as a Hugging Face transformers model directory (no custom code needed).

    python export_hf.py out/shakespeare_reflow out/shakespeare_reflow_hf
    python export_hf.py out/reflow_1/ckpt.pt hf/reflow_1 --dtype=bfloat16

Then, anywhere transformers is installed:

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained("out/shakespeare_reflow_hf")
    tokenizer = AutoTokenizer.from_pretrained("out/shakespeare_reflow_hf")

gpt2 loads as GPT2LMHeadModel, the other four as LlamaForCausalLM; see hf_export/model.py.
"""

import sys

from core.checkpoint import load_checkpoint, model_from_checkpoint, model_name_of, tokenizer_of
from core.errors import ArgumentParser, UserError, exit_on_user_error
from core.hardware import DTYPES
from hf_export.model import export_hf


@exit_on_user_error
def main(argv: list[str]) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a run directory or a ckpt.pt file")
    parser.add_argument("out_dir", help="the model directory to write (new or empty)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32", help="dtype of the saved weights")
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint)
    if tokenizer_of(checkpoint).remapped:
        # Its ids are not GPT-2's, and a transformers model has no output bias to give the unseen GPT-2
        # ids a -inf logit in a scattered 50,304-row table: exporting would change its distribution.
        raise UserError(f"{args.checkpoint} was trained with vocab='corpus' (its token ids are not GPT-2's); "
                        "only vocab='gpt2' models can be exported: retrain with --vocab=gpt2")
    model = model_from_checkpoint(checkpoint)
    files = export_hf(model, args.out_dir, DTYPES[args.dtype])
    name = model_name_of(checkpoint)
    kind = "GPT2LMHeadModel" if name == "gpt2" else "LlamaForCausalLM"
    print(f"exported {name} as {kind} to {args.out_dir}: {', '.join(f.name for f in files)}")
    if not any(f.name == "vocab.json" for f in files):
        print(f"no tokenizer written: the model's {model.config.vocab_size} tokens do not cover GPT-2's")


if __name__ == "__main__":
    main(sys.argv[1:])
