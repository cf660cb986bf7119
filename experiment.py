"""Run the interpretability suite on a checkpoint.

    python experiment.py config/train_shakespeare_reflow.py              # menu: type all, or 1 3 5
    python experiment.py config/train_shakespeare_reflow.py --run all    # no menu
    python experiment.py config/train_shakespeare_reflow.py --run 1 3 5 --ckpt out/other/ckpt.pt
    python experiment.py config/train_shakespeare_gpt2_new.py --run 2 9 --posthoc=svd
    python experiment.py config/train_shakespeare_reflow.py --run all --reference out/shakespeare_gpt2_new
    python experiment.py config/train_shakespeare_reflow.py --run all --lang=zh    # in Chinese
    python experiment.py config/train_shakespeare_reflow.py --run 16 --teacher_run=out/teacher  # its teacher
    python experiment.py --compare RUN RUN ...        # compare finished runs (see study.py --runs)

The checkpoint is out_dir/ckpt.pt from the config, or --ckpt PATH. Reports go to
audit_reports/ beside the checkpoint: NN_slug.md, NN_slug.json, NN_slug_*.png, and index.html
(audit_reports_posthoc_svd/ etc. for gpt2 / gpt2-new read through a post-hoc factorization).
--reference RUN adds a trained model (its post-hoc factorization for the recipe experiments) that
the experiments measure beside the random-init controls.
--teacher_run=RUN names the teacher experiment 16 compares the model with; a model trained with
distill_from is compared with that teacher without it.
--lang=zh writes the menu, the reports, the audit page and the figures in Chinese (--lang=en in
English; the default, auto, follows the locale: LC_ALL or LANG starting with zh). See docs/i18n.md.
Any other --key=value overrides a config key (probe words, prompts, ...; see core/config.py).
"""

import re
import sys

from core.config import load_config, parse_args
from core.errors import UserError, exit_on_user_error
from core.i18n import _, use_language
from core.wandb_login import check_wandb_ready
from experiments.context import load_context
from experiments.runner import check_runnable, menu, parse_selection, run_experiments
from experiments.teacher import teacher_run

USAGE = ("usage: python experiment.py CONFIG [--ckpt PATH] [--reference RUN] [--run all | --run 1 3 5] "
         "[--key=value ...], or python experiment.py --compare RUN RUN ...")
SELECTION_WORD = re.compile(r"^(all|[\d,\-]+)$", re.IGNORECASE)


def split_args(argv: list[str]) -> tuple[list[str], str | None, str | None]:
    """Take --ckpt PATH and --run SELECTION (several words) out of argv; the rest is for parse_args."""
    rest, ckpt, selection = [], None, None
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("--ckpt", "--reference"):
            if not eq:
                if i + 1 >= len(argv):
                    raise UserError(f"{name} needs a path: {name} out/run/ckpt.pt")
                i, value = i + 1, argv[i + 1]
            if name == "--ckpt":
                ckpt = value
            else:
                rest.append(f"--reference={value}")  # taken out again by main
        elif name == "--run":
            words = [value] if eq else []
            while not eq and i + 1 < len(argv) and SELECTION_WORD.match(argv[i + 1]):
                i += 1
                words.append(argv[i])
            if not words:
                raise UserError("--run needs experiments: --run all, or --run 1 3 5")
            selection = " ".join(words)
        else:
            rest.append(arg)
        i += 1
    return rest, ckpt, selection


def ask() -> str:
    """Show the menu and read a selection; end of input is an error, not a silent exit."""
    print(menu())
    try:
        return input("\n" + _("Run which experiments? Type all, or numbers like 1 3 5: "))
    except EOFError:
        raise UserError(_("no selection (end of input at the menu); type all or numbers, "
                          "or pass --run all / --run 1 3 5"))


@exit_on_user_error
def main(argv: list[str]) -> None:
    if argv[:1] == ["--compare"]:  # compare finished runs: the study command's comparison
        from studying.compare import compare_runs_main

        return compare_runs_main(argv[1:])
    rest, ckpt, selection = split_args(argv)
    config_file, overrides = parse_args(rest)
    reference = overrides.pop("reference", None)
    if config_file is None:
        raise UserError(USAGE)
    cfg = load_config(config_file, overrides)
    use_language(cfg.lang)  # the menu, the reports and the audit page speak it
    if cfg.wandb_log:
        check_wandb_ready()
    if selection is not None:  # check the numbers before the (slower) checkpoint load
        numbers, explicit = parse_selection(selection)
        check_runnable(numbers, cfg.model, explicit, cfg.posthoc, teacher_run(cfg))
    ctx = load_context(cfg, ckpt, reference)
    if selection is None:
        numbers, explicit = parse_selection(ask())
        check_runnable(numbers, ctx.model_name, explicit, cfg.posthoc, teacher_run(cfg))
    try:
        run_experiments(ctx, numbers)
    except KeyboardInterrupt:  # the reports finished so far are whole, and the audit page lists them
        print(f"\ninterrupted; finished reports are in {ctx.reports_dir}", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main(sys.argv[1:])
