"""The standard SAE metrics, defined as SAELens defines them (sae_lens/evals.py), computed on our models.

- L0: the mean over tokens of the number of non-zero latents (SAELens `l0`).
- Fraction of variance explained: 1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2), expectations over
  tokens, the variance summed over dimensions (SAELens `explained_variance`). 1 for a perfect
  reconstruction, 0 for reconstructing every token by the mean activation.
- CE loss recovered: (CE_zero - CE_sae) / (CE_zero - CE_clean), where CE_clean is the model's
  next-token loss, CE_sae its loss with the reconstruction spliced in at the hook point, and CE_zero
  its loss with the activation there set to zero (SAELens `ce_loss_score`). 1 when the splice changes
  nothing; 0 when it is as bad as zero-ablation.
- Latent density: the fraction of tokens on which a latent is non-zero (SAELens `feature_density`).
  Dead latents have density 0 on the evaluation tokens; dense latents fire on more than
  DENSE_DENSITY of them.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F

from models import Transformer

# Latents firing on more than 10% of tokens are "dense" (Sun et al. 2025, "Dense SAE latents are
# features, not bugs"); a TopK SAE with k of width latents fires each on k / width of tokens on average.
DENSE_DENSITY = 0.1


def l0(latents: torch.Tensor) -> float:
    """Mean number of non-zero latents per token; latents (..., width)."""
    return (latents != 0).sum(-1).double().mean().item()


def fraction_of_variance_explained(x: torch.Tensor, reconstruction: torch.Tensor) -> float:
    """1 - E||x - x_hat||^2 / (E||x||^2 - ||E x||^2) over tokens, in float64; x (..., C)."""
    x = x.double().flatten(0, -2)
    residual = (x - reconstruction.double().flatten(0, -2)).pow(2).sum(-1).mean()
    variance = x.pow(2).sum(-1).mean() - x.mean(0).pow(2).sum()
    return (1 - residual / variance).item()


def latent_density(latents: torch.Tensor) -> torch.Tensor:
    """(width,) the fraction of tokens on which each latent is non-zero; latents (..., width)."""
    return (latents.flatten(0, -2) != 0).double().mean(0)


def dead_and_dense(density: torch.Tensor) -> tuple[int, int]:
    """How many latents never fire (density 0) and how many fire on more than DENSE_DENSITY of tokens."""
    return int((density == 0).sum()), int((density > DENSE_DENSITY).sum())


def ce_loss_recovered(clean: float, spliced: float, ablated: float) -> float:
    """(CE_zero - CE_sae) / (CE_zero - CE_clean): the share of the loss that zero-ablating the hook
    point costs which the reconstruction gives back."""
    return (ablated - spliced) / (ablated - clean)


BATCH_WINDOWS = 16  # windows per forward: a batch's (B, T, V) logits at once, not the whole text's


@torch.no_grad()
def next_token_loss(model: Transformer, windows: torch.Tensor,
                    replace: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> float:
    """Mean next-token cross-entropy over windows (n, T + 1), with `replace` {hook name: function of
    the activation} spliced in through our hook points."""
    total = 0.0
    with model.hooks(replace or {}):
        for batch in windows.split(BATCH_WINDOWS):
            logits, _ = model(batch[:, :-1])
            targets = batch[:, 1:].flatten()
            total += F.cross_entropy(logits.flatten(0, 1).double(), targets, reduction="sum").item()
    return total / windows[:, 1:].numel()


@torch.no_grad()
def sae_metrics(model: Transformer, sae, hook_name: str, windows: torch.Tensor) -> dict[str, float]:
    """L0, fraction of variance explained, CE losses (clean, spliced, zero-ablated) and CE loss recovered,
    dead and dense latents of `sae` (anything with encode and decode, e.g. a SAELens SAE) at `hook_name`
    on the tokens of `windows` (n, T + 1); definitions in this module's docstring."""
    was_training = model.training
    model.eval()
    try:
        _, cache = model.run_with_cache(windows[:, :-1], names_filter=hook_name)
        x = cache[hook_name]
        latents = sae.encode(x.float())
        reconstruct = lambda activation: sae.decode(sae.encode(activation.float())).to(activation.dtype)
        clean = next_token_loss(model, windows)
        spliced = next_token_loss(model, windows, {hook_name: reconstruct})
        ablated = next_token_loss(model, windows, {hook_name: torch.zeros_like})
    finally:
        model.train(was_training)
    dead, dense = dead_and_dense(latent_density(latents))
    return {
        "l0": l0(latents),
        "fraction_of_variance_explained": fraction_of_variance_explained(x, sae.decode(latents)),
        "ce_loss_clean": clean, "ce_loss_with_sae": spliced, "ce_loss_zero_ablated": ablated,
        "ce_loss_recovered": ce_loss_recovered(clean, spliced, ablated),
        "dead_latents": dead, "dense_latents": dense,
    }
