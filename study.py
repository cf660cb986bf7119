"""Run a study: train every arm at every seed, run its experiments, and compare the arms.

    python study.py studies/hard_sparsity.py                    # train, evaluate, compare; resumable
    python study.py studies/hard_sparsity.py --runs_dir=out/x   # elsewhere (default out/studies/NAME)
    python study.py --runs RUN RUN RUN RUN ... [--out=DIR]      # compare runs that already exist
    python study.py studies/hard_sparsity.py --lang=zh          # the comparison in Chinese (docs/i18n.md)
    CUDA_VISIBLE_DEVICES=1 python study.py studies/depth.py --shard=2/4   # one of four processes, one per GPU

Killed at any moment and started again, a study continues where it was: finished runs are not
retrained, a half-trained run resumes from its last checkpoint, finished reports are reused. The
comparison goes to results/NAME/ (or --results_dir): comparison.md, .json, figures, index.html.
How it decides (pre-registered primary metrics, paired tests, one Holm family, the verdicts, the
floors): docs/studies.md. See studying/ for the code, and studies/ for the studies.
"""

import sys

from core.config import parse_args
from core.errors import UserError, exit_on_user_error
from studying.compare import check_language, compare_runs_main, compare_study, speak
from studying.runs import Shard, run_study
from studying.spec import load_study

USAGE = ("usage: python study.py STUDY_FILE [--runs_dir=DIR] [--results_dir=DIR] [--shard=I/N] "
         "[--lang=en|zh], or python study.py --runs RUN ... [--out=DIR] [--lang=en|zh]")


@exit_on_user_error
def main(argv: list[str]) -> None:
    if argv[:1] == ["--runs"]:
        return compare_runs_main(argv[1:])
    study_file, overrides = parse_args(argv)
    if study_file is None:
        raise UserError(USAGE)
    lang = check_language(overrides.pop("lang", "auto"))  # the comparison's; the runs keep their own
    shard = Shard.parse(overrides.pop("shard", "1/1"))
    study = load_study(study_file, overrides)
    try:
        done = run_study(study, shard)
    except KeyboardInterrupt:
        print(f"\nstopped; run the same command again to continue ({study.runs_dir})", file=sys.stderr)
        sys.exit(130)
    if not done:
        print(f"other shards' runs are not done yet; the last shard to finish compares, or run "
              f"python study.py {study_file} once they are")
        return
    speak(lang)
    page = compare_study(study, "python study.py " + " ".join(argv))
    print(f"comparison written to {study.results_dir}; open {page}")


if __name__ == "__main__":
    main(sys.argv[1:])
