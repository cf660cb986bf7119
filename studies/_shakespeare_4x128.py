"""What the five shipped studies share (not a study itself): one size, one schedule, one runs folder.

Sharing them means sharing runs: an arm trained by one study (reflow at seed 1, say) is reused by
every other study that names it, not trained again. A study file takes these with
`from studies._shakespeare_4x128 import *` and may still override any of them.

Size: 4 layers x 128 wide, S = 128, 1,200 steps of 4 x 256 tokens. Measured on the 2-core Xeon
(AVX-512): 0.37 s a step alone, 7.6 min a run.
"""

runs_dir = "out/studies/shakespeare_4x128"
base_config = "config/train_shakespeare_reflow.py"
# floor_draws: the random-init floor is a reference column in a study, never what the arms are compared on.
settings = {"n_embd": 128, "n_signals": 128, "max_iters": 1200, "lr_decay_iters": 1200, "eval_interval": 300,
            "floor_draws": 20}
seeds = [1, 2, 3]
