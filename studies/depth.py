"""Depth (issue 13 §4.3): reflow at 2, 4 and 8 layers of one width: val loss by depth, and where
predictions crystallize (the first layer, as a fraction of depth, from which the logit lens ranks
the target of each target prompt first).

The paper: interventions work at L0-L12 of 36 layers and are inert beyond L18.

    python study.py studies/depth.py

Size: width 256, 700 steps of 4 x 256 tokens. At this size the vocabulary matmuls (V x 256) cost about
as much as four layers, so a step costs ~0.9x (2 layers), 1x (4), ~1.25x (8) of the default's ~0.55 s:
~20 min per seed for the three depths at the README's ~2,000 tokens/s on 2 cores, 3 seeds ~60 min,
plus the logit lens (experiment 7) and val loss per run: ~65 min in all on such a machine.
"""

description = "reflow at 2, 4, 8 layers (width 256), 700 steps each, 3 seeds"
base_config = "config/train_shakespeare_reflow.py"
settings = {"max_iters": 700, "lr_decay_iters": 700}
arms = {
    "layers_2": {"n_layer": 2},
    "layers_4": {"n_layer": 4},
    "layers_8": {"n_layer": 8},
}
seeds = [1, 2, 3]
experiments = [7]
metrics = [
    "val loss",
    "crystallization depth",
    "7:targets predicted first",
    "7:final target rank (geometric mean)",
]
comparisons = [("layers_2", "layers_4"), ("layers_4", "layers_8"), ("layers_2", "layers_8")]
