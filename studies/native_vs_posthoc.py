"""Native vs post-hoc (issue 13 §4.2): is reflow's signal space more interpretable, by the suite's own
measures, than a standard model's embedding factorized after training (truncated SVD, sparse dictionary)?

    python study.py studies/native_vs_posthoc.py

Size and run time: studies/_shakespeare_4x128.py (4 x 128, corpus vocabulary, 2,400 steps, ~6.5 min a
run). The two gpt2-new arms differ only in how the trained embedding is read (`posthoc`), so they share
their runs: 2 trainings x 6 seeds = 12 runs (~80 min), then every recipe experiment on 18 (arm, seed)
readings. The dictionary is fitted on the ~3,500 rows the experiments read (the 2,000 most frequent
tokens, every token of the val text they run on, the word lists), for the model and each of its 3
random-init controls (10-70 s a run: the dictionary arm's are the slowest). About 95 min in all from
nothing on the 2-core Xeon; after hard_sparsity, whose runs it shares, ~15 min.
"""

from studies._shakespeare_4x128 import *  # noqa: F403  shared: runs_dir, base_config, settings, seeds

description = ("reflow vs gpt2-new + post-hoc SVD and + post-hoc sparse dictionary, 4 x 128, "
               "corpus vocabulary, 2,400 steps, 6 seeds")
arms = {
    "reflow": {},
    "gpt2_new_svd": {"model": "gpt2-new", "posthoc": "svd"},
    # Each random-init floor draw of this arm is a dictionary fit of its own: 3 (the kept controls) not 20.
    "gpt2_new_dictionary": {"model": "gpt2-new", "posthoc": "dictionary", "posthoc_active_fraction": 0.11,
                            "floor_draws": 3},
}
experiments = [1, 2, 3, 4, 5, 8, 9, 14]
metrics = [
    "val loss",
    "1:top-pair cosine",
    "1:group agreement",
    "2:Hoyer sparsity",
    "2:L1-90% share",
    "2:usage Gini",
    "4:silhouette",
    "5:MRR",
    "8:energy share",
    "9:log-prob drop, the top signal: percentile in the basis null",
    "14:median selectivity",
    "14:median selectivity (gain over control)",  # over the random-init models' value
    "5:MRR (gain over control)",  # over the no-offset baseline
]
comparisons = [("reflow", "gpt2_new_svd"), ("reflow", "gpt2_new_dictionary")]
# Pre-registered: reflow's native signals are the more interpretable, so each post-hoc reading is expected
# below reflow (above, for the Gini of usage, where lower is more even). On the cosine metrics the SVD arm
# is gpt2-new's own embedding (the comparison says so).
primary = {
    "1:top-pair cosine": "lower",
    "4:silhouette": "lower",
    "2:usage Gini": "higher",
    "14:median selectivity (gain over control)": "lower",
    "9:log-prob drop, the top signal: percentile in the basis null": "lower",
}
