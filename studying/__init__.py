"""Studies: the paper's comparisons as one command each (issue 13).

spec.py         a study file: arms (base config + overrides), seeds, experiments, metrics, pairs
runs.py         train every run not finished (train.py), run the missing experiments (experiment.py)
progress.py     which run and experiment a study is on, and the time left
outcomes.py     each run's numbers: the shared-text val loss, report metrics, random-init references
floors.py       unigram, bigram and trigram floors of the val text, counted on train.bin
metric_names.py the metric names each experiment can report, read from its source (checked at load)
statistics.py   per cell: paired t / sign-flip (shared seeds) or Welch, 95% CI, Holm over the primaries,
                the verdict, the smallest detectable effect, leave-one-seed-out robustness; the rule
comparison.py   comparison.md / .json / *.png / index.html, written atomically
compare.py      a study's runs, or any finished runs, into a comparison
"""
