"""Depth (issue 13 §4.3): reflow at 2, 4 and 8 layers of one width (128): val loss by depth, where
predictions crystallize (the first layer, as a fraction of depth, from which the logit lens ranks
the target of each target prompt first), and where steering still moves the prediction (experiment
10's layers whose held-out shift beats the word-difference null there, as a fraction of depth).

The paper: interventions work at L0-L12 of 36 layers and are inert beyond L18.

    python study.py studies/depth.py

Size (reasoned first, then measured): 4 layers x 128 wide, S = 128, 1,200 steps of 4 x 256 tokens. At the
Shakespeare default (4 x 256, S = 256) the README measures ~2,000 tokens/s on 2 cores, 700 steps in
~6.5 min; per token that model does ~16M multiply-adds, ~13M of them in the V x S readout. At width 128
it does ~7.5M, so a step costs roughly half (say 0.55x, small matmuls run less efficiently): 1,200
steps ~6 min per run. Measured on the 2-core Xeon:
0.37 s a step alone, 7.6 min a run; dense reflow scores 4.73 nats on the study's val text, past
the bigram floor (4.87). The comparison says whether each arm clears it; if the dense reflow arm
does not (a slower schedule, other data), raise max_iters (and lr_decay_iters) before reading it.
At width 128 the readout dominates a step, so 2 / 4 / 8 layers were reasoned at ~0.9x / 1x / 1.15x
of the 4-layer step; measured (two runs side by side, one thread each) 0.84x / 1x / 1.12x: about
6.2 / 7.4 / 8.4 min a run alone, 22 min per seed, 66 min for 3 seeds, plus under half a minute of
experiments 7 and 10 and val loss per run: ~70 min in all from nothing on the README's machine.
"""

from studies._shakespeare_4x128 import *  # noqa: F403  shared: runs_dir, base_config, settings, seeds

description = "reflow at 2, 4, 8 layers (width 128, S = 128), 1,200 steps each, 3 seeds"
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
