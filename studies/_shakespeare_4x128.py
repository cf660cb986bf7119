"""What the five shipped studies share (not a study itself): one size, one schedule, six seeds, one runs
folder.

Sharing them means sharing runs: an arm trained by one study (reflow at seed 1, say) is reused by
every other study that names it, not trained again. A study file takes these with
`from studies._shakespeare_4x128 import *` and may still override any of them.

Size (reasoned first, then measured): 4 layers x 128 wide, S = 128, 1,200 steps of 4 x 256 tokens. At
the Shakespeare default (4 x 256, S = 256) the README measures ~2,000 tokens/s on 2 cores, 700 steps in
~6.5 min; per token that model does ~16M multiply-adds, ~13M of them in the V x S readout. At width
128 it does ~7.5M, so a step was reasoned at roughly half (0.55x: small matmuls run less efficiently),
~6 min a run. Measured on the 2-core Xeon (AVX-512): 0.37-0.38 s a step alone, 7.4-7.6 min a run.
A smaller model trained longer: dense reflow scores 4.726 nats on the study's val text (3 seeds),
past the bigram floor (4.871) but not the trigram floor (4.716; docs/studies.md). Every comparison
states by how much each arm clears each floor; issue 22 asks the dense arms to clear the trigram by
0.2 nats, so raise max_iters (and lr_decay_iters), or train on the remapped vocabulary, before the
studies are re-run.
"""

runs_dir = "out/studies/shakespeare_4x128"
base_config = "config/train_shakespeare_reflow.py"
# floor_draws: the random-init floor is a reference column in a study, never what the arms are compared on.
settings = {"n_embd": 128, "n_signals": 128, "max_iters": 1200, "lr_decay_iters": 1200, "eval_interval": 300,
            "floor_draws": 20}
# Six seeds, shared by every arm: each seed is a block (same data order; same initial weights where the
# architecture matches), so the tests are paired. At 3 seeds a paired t-test at Holm's first step over
# 4 primaries (alpha 0.0125) detects only ~6 sd of the differences with 80% power; at 6, ~2.2 sd.
seeds = [1, 2, 3, 4, 5, 6]
# Left off: the shipped studies train on GPT-2's full table. `settings["vocab"] = "corpus"` would give every
# arm rows only for the 19,379 GPT-2 ids Shakespeare holds (docs/vocab.md): half the parameters at this
# size. Val losses under it are not comparable with these runs', and it names no runs of its own.
