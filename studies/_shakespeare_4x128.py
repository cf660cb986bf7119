"""What the five shipped studies share (not a study itself): one size, one schedule, six seeds, one runs
folder.

Sharing them means sharing runs: an arm trained by one study (reflow at seed 1, say) is reused by
every other study that names it, not trained again. A study file takes these with
`from studies._shakespeare_4x128 import *` and may still override any of them.

Size (reasoned first, then measured): 4 layers x 128 wide, S = 128, 3,600 steps of 4 x 256 tokens. At
the Shakespeare default (4 x 256, S = 256) the README measures ~2,000 tokens/s on 2 cores, 700 steps in
~6.5 min; per token that model does ~16M multiply-adds, ~13M of them in the V x S readout. At width
128 it does ~7.5M, so a step was reasoned at roughly half (0.55x: small matmuls run less efficiently),
~6 min a run. Measured on the 2-core Xeon (AVX-512): 0.37-0.38 s a step alone, 7.4-7.6 min a run.
A smaller model trained longer, on the corpus's own vocabulary (issue 22): the 1,200-step runs on
GPT-2's full table scored 4.726 nats on the study's val text (dense reflow, 3 seeds), past the bigram
floor (4.871) but not the trigram floor (4.716). vocab="corpus" keeps rows for the 19,379 GPT-2 ids
Shakespeare holds (docs/vocab.md), halving the parameters and a step (0.57x). Pilots, seed 1, dense
reflow, scored with the study's own val loss on the idle 2-core Xeon (2026-12-06): 2,400 steps 4.478
(trigram - 0.239), 3,600 steps 4.407 (trigram - 0.309). The schedule is 2,400 steps (1.7 epochs): it
clears the trigram floor by the 0.2 nats issue 22 asks, and at 0.16 s a step (idle Xeon, 2026-12-06;
two one-thread runs side by side give the same throughput) a run takes ~7 min, so the 48 runs of the
five studies take ~6 h instead of ~9 h at 3,600. Every comparison reports each arm's margin over the
trigram floor, so a seed set that fell short would show it.
"""

runs_dir = "out/studies/shakespeare_4x128_corpus"  # not the 1,200-step GPT-2-vocabulary runs' folder
base_config = "config/train_shakespeare_reflow.py"
# floor_draws: the random-init floor is a reference column in a study, never what the arms are compared on.
settings = {"n_embd": 128, "n_signals": 128, "vocab": "corpus", "max_iters": 2400, "lr_decay_iters": 2400,
            "eval_interval": 600, "floor_draws": 20}
# Six seeds, shared by every arm: each seed is a block (same data order; same initial weights where the
# architecture matches), so the tests are paired. At 3 seeds a paired t-test at Holm's first step over
# 4 primaries (alpha 0.0125) detects only ~6 sd of the differences with 80% power; at 6, ~2.2 sd.
seeds = [1, 2, 3, 4, 5, 6]
