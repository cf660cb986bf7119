"""Export a checkpoint as a TransformerLens HookedTransformer directory.

    python export_tl.py out/shakespeare_reflow                    # writes out/shakespeare_reflow/tl
    python export_tl.py out/reflow_1/ckpt.pt tl/reflow_1

Then, with transformer_lens installed (pip install -e ".[tl]"):

    from tl_export import load_exported
    model = load_exported("out/shakespeare_reflow/tl")   # a HookedTransformer
    logits, cache = model.run_with_cache(tokens)

or in code, without a file: tl_export.hooked_transformer(our_model). See tl_export/model.py for the
layout, the hook names, and what TransformerLens cannot express (refused in one line, exit 2).
"""

import sys
from pathlib import Path

from core.checkpoint import checkpoint_path, load_checkpoint, model_from_checkpoint, model_name_of
from core.errors import ArgumentParser, exit_on_user_error
from tl_export import export_tl

DEFAULT_SUBDIR = "tl"  # beside the checkpoint when no out_dir is given


@exit_on_user_error
def main(argv: list[str]) -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a run directory or a ckpt.pt file")
    parser.add_argument("out_dir", nargs="?", help=f"the directory to write (new or empty); "
                        f"default: {DEFAULT_SUBDIR}/ beside the checkpoint")
    args = parser.parse_args(argv)
    checkpoint = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(checkpoint)
    out_dir = Path(args.out_dir) if args.out_dir else checkpoint_path(args.checkpoint).parent / DEFAULT_SUBDIR
    files = export_tl(model, out_dir)
    print(f"exported {model_name_of(checkpoint)} as a TransformerLens HookedTransformer to {out_dir}: "
          f"{', '.join(f.name for f in files)}")


if __name__ == "__main__":
    main(sys.argv[1:])
