"""At equal sparsity, do reflow's native signals explain and steer the model as well as an SAE trained on the
same activations?

Issue 23 §3. Experiment 15 (experiments/sae_comparison.py) codes the residual stream at a middle layer and
the last layer with exactly sae_k = 14 features per token (the paper's 11% of 128 signals) and measures, on
the study's val text: fraction of variance explained, CE loss recovered when the reconstruction is spliced
in, and single-token selectivity of the features. On the same footing, each reading's feature directions are
edited in the forward pass (experiments/feature_interventions.py): the causal ablation percentile of its top
feature (chosen by first-order estimated drop in log p(true next token), mean-ablated at the layer, among as
many random directions), and steering with a single feature: for each sentiment word the feature most tied
to it on train.bin activations, added at steer_alpha x the residual norm on held-out val windows, and the
rise of the word's log-prob (beside random features of the same reading). The readings:
- reflow_native: reflow's own signals, h W_basis^T, top 14 per token, h rebuilt through W_basis;
- reflow_svd: the right singular vectors of the same activations (a basis fitted to their variance);
- reflow_sae_128 / _512 / _2048: SAELens TopK SAEs (k = 14) trained on reflow's activations of train.bin;
- gpt2_new_sae_512: the same SAE on gpt2-new trained alike (is reflow harder or easier to code?).
The arms differ only in `sae_reading` / `sae_widths` (keys the training never reads), so the reflow arms
share one run per seed and gpt2-new shares the native_vs_posthoc study's runs: each arm's reports live in
audit_reports_reading_<reading> beside the checkpoint. Seeds are shared, so every test is paired.

    python study.py studies/sae_vs_signals.py

Size as studies/_shakespeare_4x128.py (4 x 128, S = 128, 2,400 steps, 6 seeds): with the native_vs_posthoc
runs trained, nothing new trains; experiment 15 runs 6 arms x 6 seeds = 36 times (the native and SVD arms
train no SAE, an SAE arm two). Measured on the 2-core Xeon (AVX-512, 2026-12-07, one thread, a training
beside it): 34-37 s a run for the native and SVD arms, 38-44 s for the 128- and 512-latent SAEs, 58-60 s
for 2,048 latents; 26 min for the 36. From nothing, add reflow's and gpt2-new's 12 runs (~80 min).
"""

from studies._shakespeare_4x128 import *  # noqa: F403  shared: runs_dir, base_config, settings, seeds

description = ("reflow's native signals vs SVD directions vs TopK SAEs (128 / 512 / 2048 latents) at "
               "L0 = 14, and an SAE on gpt2-new; 4 x 128, 6 seeds")
arms = {
    "reflow_native": {"sae_reading": "native"},
    "reflow_svd": {"sae_reading": "svd"},
    "reflow_sae_128": {"sae_reading": "sae", "sae_widths": [128]},
    "reflow_sae_512": {"sae_reading": "sae", "sae_widths": [512]},
    "reflow_sae_2048": {"sae_reading": "sae", "sae_widths": [2048]},
    "gpt2_new_sae_512": {"model": "gpt2-new", "sae_reading": "sae", "sae_widths": [512]},
}
experiments = [15]
metrics = [
    "15:fraction of variance explained, the chosen reading, middle layer",
    "15:fraction of variance explained, the chosen reading, last layer",
    "15:CE loss recovered, the chosen reading, middle layer",
    "15:CE loss recovered, the chosen reading, last layer",
    "15:single-token selectivity, the chosen reading, middle layer",
    "15:single-token selectivity, the chosen reading, last layer",
    "15:causal ablation percentile, top feature, the chosen reading, middle layer",
    "15:causal ablation percentile, top feature, the chosen reading, last layer",
    "15:steering log-prob rise, the chosen reading, middle layer",
    "15:steering log-prob rise, the chosen reading, last layer",
    "val loss",
]
# The native signals are the second arm of the first four comparisons. Pre-registered: a TopK SAE is trained
# to reconstruct at exactly this L0 and the SVD basis is fitted to these activations, while W_basis was
# trained only to embed and read out tokens, so the native signals are expected to explain less and to
# recover less of the loss. The last comparison asks whether SAEs code the two models differently.
# Steering at the last layer is the question's other half and has no expected side: a signal is a readout
# direction of its recipe's tokens, an SAE latent is fitted to the activations, so it is tested two-sided.
# At most five primaries: FVE at the middle layer, the ablation percentiles and the middle-layer steering only
# describe.
_NATIVE = [("reflow_sae_128", "reflow_native"), ("reflow_sae_512", "reflow_native"),
           ("reflow_sae_2048", "reflow_native"), ("reflow_svd", "reflow_native")]
_MODELS = ("reflow_sae_512", "gpt2_new_sae_512")
comparisons = [*_NATIVE, _MODELS]
_EXPECTED = {**dict.fromkeys(_NATIVE, "lower"), _MODELS: "differs"}
primary = {
    "15:fraction of variance explained, the chosen reading, last layer": _EXPECTED,
    "15:CE loss recovered, the chosen reading, middle layer": _EXPECTED,
    "15:CE loss recovered, the chosen reading, last layer": _EXPECTED,
    "15:steering log-prob rise, the chosen reading, last layer": dict.fromkeys(comparisons, "differs"),
}
