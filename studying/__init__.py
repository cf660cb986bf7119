"""Studies: the paper's comparisons as one command each (issue 13).

spec.py         a study file: arms (base config + overrides), seeds, experiments, metrics, pairs
runs.py         train every run not finished (train.py), run the missing experiments (experiment.py)
progress.py     which run and experiment a study is on, and the time left
outcomes.py     each run's numbers: the shared-text val loss, report metrics, random-init references
statistics.py   per pair and metric: difference, 95% CI, Welch's test, Holm; the rule
comparison.py   comparison.md / .json / *.png / index.html, written atomically
compare.py      a study's runs, or any finished runs, into a comparison
"""
