"""Soft vs hard sparsity (issue 15 §3): reflow, reflow + recipe_l1 at two strengths, reflow-topk.

The reFlow author's open question is the tension between hard sparsity and semantic fidelity: Top-64
of 1024 destroys recipe structure (top-pair cosine 0.76 -> 0.30, algebra 3/3 -> 0/3), while the dense
model is only "naturally ~11% sparse". recipe_l1 (training/regularizers.py) asks for sparse recipes
softly: its term is the mean over tokens of ||r||_1 / (sqrt(S) ||r||_2), about 0.80 for Gaussian rows
and 1/sqrt(S) for one-hot rows, blind to the R -> cR, B -> B/c rescaling that leaves the model unchanged.

    python study.py studies/soft_sparsity.py

Strengths: 5 and 50, the two the issue asks for, one of them reaching the paper's ~11%. The first
pick, 0.05 and 0.5, was by reasoning; 0.5's first seed ended at a term of 0.51 (Gaussian rows 0.80),
far from concentrated rows, so 0.05 could only have nudged and the weak arm became 5: the study's
comparison reports each arm's Hoyer sparsity and L1-90% share (experiment 2), and whether one reaches
the paper's ~11% is read off it. Neither 0.5 nor 5 did (L1-90% share 0.64 and 0.51), so 50 was added.
The 0.5 arm ran 3 seeds and differed from reflow only in sparsity (0.641 vs 0.655, Holm p 0.016; no
detectable difference in loss or any fidelity metric); it was then dropped to bring the study back to
the issue's four arms and closer to its time budget. (By "share beyond 1.58 RMS", the only reading
under which Gaussian rows give the paper's number, every dense arm sits at ~11% already.)
Size as studies/_shakespeare_4x128.py: 4 layers x 128, S = 128, 1,200 steps, 4 arms x 6 seeds = 24 runs.
recipe_l1 adds one pass over the V x S recipes per step, which measured within noise of plain
reflow (two runs side by side, one thread each). At ~7.5 min a run alone plus under a minute of
experiments, that is about 190 min from nothing on the README's 2-core machine (resumable): a shorter
schedule would fit 90, but would no longer share its reflow and topk runs with the other studies.
Run after studies/hard_sparsity.py, whose reflow and topk runs it shares, it trains only its 12
recipe_l1 runs: ~100 min.
"""

from studies._shakespeare_4x128 import *  # noqa: F403  shared: runs_dir, base_config, settings, seeds

description = (
    "reflow vs reflow + recipe_l1 (5, 50) vs reflow-topk (k = S/16), 4 x 128, corpus vocabulary, 2,400 "
    "steps, 6 seeds")
arms = {
    "reflow": {},
    "recipe_l1_5": {"recipe_l1": 5.0},
    "recipe_l1_50": {"recipe_l1": 50.0},
    "reflow_topk": {"model": "reflow-topk", "topk": 8},  # S/16, as the paper's 64 of 1024
}
experiments = [1, 2, 4, 5, 9]
metrics = [
    "val loss",
    "2:Hoyer sparsity",
    "2:L1-90% share",
    "2:share beyond 1.58 RMS",
    "2:usage Gini",
    "1:top-pair cosine",
    "5:MRR",
    "4:silhouette",
    "9:log-prob drop, the top signal: percentile in the basis null",
]
comparisons = [("reflow", "recipe_l1_5"), ("reflow", "recipe_l1_50"), ("reflow", "reflow_topk"),
               ("recipe_l1_5", "reflow_topk"), ("recipe_l1_50", "reflow_topk")]
# Pre-registered: sparsity concentrates recipes and costs loss; soft sparsity keeps more recipe structure
# than hard. recipe_l1 at 50 against top-k: no direction is claimed for sparsity and loss ("differs").
_against_reflow = [("reflow", "recipe_l1_5"), ("reflow", "recipe_l1_50"), ("reflow", "reflow_topk")]
primary = {
    "2:L1-90% share": {**dict.fromkeys(_against_reflow, "lower"), ("recipe_l1_5", "reflow_topk"): "lower",
                       ("recipe_l1_50", "reflow_topk"): "differs"},
    "val loss": {**dict.fromkeys(_against_reflow, "higher"), ("recipe_l1_5", "reflow_topk"): "higher",
                 ("recipe_l1_50", "reflow_topk"): "differs"},
    "4:silhouette": "lower",
    "1:top-pair cosine": "lower",
}
