"""Hard sparsity (issue 13 §4.1): reflow vs reflow-topk (k = S/16) vs gpt2-new read through a post-hoc SVD,
at equal steps and tokens.

The paper (reflow vs its Top-64-of-1024 variant): recipe top-pair cosine 0.76 -> 0.30, algebra 3/3 -> 0/3,
silhouette +0.11 -> -0.02, at a small cost in val loss. Added here: the active fraction and the
causal-ablation concentration, and a standard model factorized after training as the baseline.

    python study.py studies/hard_sparsity.py

Size: the Shakespeare default (4 layers x 256, S = 256, 700 steps of 4 x 256 tokens: ~6.5 min per run at
the README's ~2,000 tokens/s on 2 cores); 3 arms x 3 seeds = 9 runs, ~60 min of training, plus
~1 min of experiments and val loss per run: ~70 min in all on such a machine.
"""

description = "reflow vs reflow-topk (k = S/16) vs gpt2-new + post-hoc SVD, 700 steps each, 3 seeds"
base_config = "config/train_shakespeare_reflow.py"
settings = {"max_iters": 700, "lr_decay_iters": 700}
arms = {
    "reflow": {},
    "reflow_topk": {"model": "reflow-topk", "topk": 16},  # S/16, as the paper's 64 of 1024
    "gpt2_new_svd": {"model": "gpt2-new", "posthoc": "svd"},
}
seeds = [1, 2, 3]
experiments = [1, 2, 4, 5, 9]
metrics = [
    "val loss",
    "1:top-pair cosine",
    "4:silhouette",
    "5:answers ranked first",
    "5:MRR",
    "2:active fraction",
    "9:logit share",
    "9:probability drop",
]
comparisons = [("reflow", "reflow_topk"), ("reflow", "gpt2_new_svd")]
