"""Representation repulsion (issue 15 §3, STT): reflow + repulsion vs reflow, in the form STT reports it:
"+x% effective rank at +y% loss".

repulsion (training/regularizers.py) penalizes the mean squared cosine between hidden states of different
positions of a sequence, at every layer here. STT's LoRA run on Qwen2.5-0.5B reports +22.8% effective
rank and -36.7% isotropy at +3.1% eval loss with weight 2.0; its 100-step WikiText check +5.96% effective
rank and -12.84% isotropy at +3.45% loss. Experiment 13 measures effective rank and anisotropy of the
hidden states; the comparison gives the arms' paired differences with intervals and Holm-corrected tests.

    python study.py studies/repulsion.py

One strength, STT's own weight 2.0 (a second, 0.5, is one line away: add the arm). Size as
studies/_shakespeare_4x128.py: 2 arms x 6 seeds = 12 runs, of which the reflow arm is shared with the other
studies: ~50 min of new training on the README's 2-core machine (~95 min from nothing).
"""

from studies._shakespeare_4x128 import *  # noqa: F403  shared: runs_dir, base_config, settings, seeds

description = ("reflow vs reflow + repulsion (2.0 at every layer), 4 x 128, corpus vocabulary, "
               "2,400 steps, 6 seeds")
arms = {
    "reflow": {},
    "repulsion_2": {"repulsion": 2.0},
}
experiments = [13]
metrics = [
    "val loss",
    "13:effective rank (last layer)",
    "13:anisotropy (last layer)",
    "13:head similarity (mean over layers)",
]
comparisons = [("reflow", "repulsion_2")]
# Pre-registered: STT's claim, "+x% effective rank at +y% loss".
primary = {
    "13:effective rank (last layer)": "higher",
    "13:anisotropy (last layer)": "lower",
    "val loss": "higher",  # the cost
}
