"""Sparse autoencoders on our models' activations: SAELens TopK SAEs fed through our hook points
(training.py), saved and opened again in SAELens' format with the hook they read (saving.py), and the
standard SAE metrics as SAELens defines them (metrics.py)."""

from sparse_autoencoders.metrics import (
    ce_loss_recovered,
    dead_and_dense,
    fraction_of_variance_explained,
    l0,
    latent_density,
    sae_metrics,
)
from sparse_autoencoders.saving import load_sae, save_sae
from sparse_autoencoders.training import collect_activations, train_topk_sae

__all__ = ["ce_loss_recovered", "collect_activations", "dead_and_dense", "fraction_of_variance_explained",
           "l0", "latent_density", "load_sae", "sae_metrics", "save_sae", "train_topk_sae"]
