"""Depth (issue 13 §4.3): reflow at 2, 4 and 8 layers of one width (128): val loss by depth, where
predictions crystallize (the first layer, as a fraction of depth, from which the logit lens ranks
the target of each target prompt first), and where steering still moves the prediction (experiment
10's layers whose held-out shift beats the word-difference null there, as a fraction of depth).

The paper: interventions work at L0-L12 of 36 layers and are inert beyond L18.

    python study.py studies/depth.py

Size and run time: studies/_shakespeare_4x128.py (4 x 128, S = 128, 2,400 steps, corpus vocabulary).
The 4-layer arm is the other studies' reflow runs. Measured on the 2-core Xeon (AVX-512, 2026-12-07),
two runs side by side at one thread each, with the finished runs' experiments beside them: ~12 min a
2-layer run, ~20 min an 8-layer run (0.28 and 0.45-0.50 s a step), the 12 runs in 2.1 h; experiments 7
and 10 take 10-25 s a run. From nothing, add the 6 reflow runs (~40 min).
"""

from studies._shakespeare_4x128 import *  # noqa: F403  shared: runs_dir, base_config, settings, seeds

description = "reflow at 2, 4, 8 layers (width 128, S = 128), corpus vocabulary, 2,400 steps each, 6 seeds"
arms = {
    "layers_2": {"n_layer": 2},
    "layers_4": {},  # the base config has 4 layers: the run other studies call reflow
    "layers_8": {"n_layer": 8},
}
experiments = [7, 10]
metrics = [
    "val loss",
    "crystallization depth",
    "7:targets predicted first",
    "7:final target rank (geometric mean)",
    "10:steerable layers (fraction of depth)",
    "10:best steering layer (fraction of depth)",
]
comparisons = [("layers_2", "layers_4"), ("layers_4", "layers_8"), ("layers_2", "layers_8")]
# Pre-registered: deeper is better. Where predictions crystallize and where steering acts are described
# (exploratory): the paper's layer ranges (36 layers) have no counterpart to test at 2-8 layers.
primary = {"val loss": "lower", "7:targets predicted first": "higher"}
