"""Nulls that can fail: other bases in which to run the same procedure as in the signal basis.

A reflow model is unchanged when its signal space is rotated (W_recipe -> W_recipe Q, W_basis ->
Q^T W_basis for any orthogonal S x S matrix Q), and its residual stream can be read along any set of
directions. A claim about *the* signals (sparse recipes, concentrated readout, selective signals,
signals that carry a prediction) therefore means something only if the signal basis scores better
than bases nobody chose:
    random_rotations   uniformly random orthogonal matrices (Haar measure), drawn in one batch
    rotated_signals    W_recipe Q / Q^T W_basis: the same model, written in a random signal basis
    svd_factorization  E = (U Sigma)(V^T): the post-hoc SVD basis of the same model's embedding
The report gives the signal basis's percentile among NULL_BASES random draws and its value beside
the SVD basis's.

Why rotate signal space, and not the readout frame (W_basis Q with Q acting on the residual stream)?
A turned frame keeps W_recipe's i.i.d. entries only if the frame is orthonormal; for a Gaussian,
non-orthonormal W_basis its weights E (W_basis Q)^+ are mixtures, and on a random-init reflow the
signal basis then "beat" such frames in causal ablation. (W_recipe Q, Q^T W_basis) has exactly the
distribution of (W_recipe, W_basis) at random init, so there the signal basis is one more draw.
"""

import torch

NULL_BASES = 100  # random orthonormal bases per basis null


def random_rotations(count: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(count, dim, dim) Haar-random orthogonal matrices: QR of Gaussian matrices with the signs of
    R's diagonal folded into Q (without that fix the distribution is not uniform)."""
    gaussian = torch.randn(count, dim, dim, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]).float()


def rotated_signals(recipe: torch.Tensor, basis: torch.Tensor, rotation: torch.Tensor):
    """(recipe Q, Q^T basis): the same embedding E = recipe @ basis written in another signal basis."""
    return recipe @ rotation, rotation.t() @ basis


def svd_factorization(embedding: torch.Tensor, rank: int | None = None):
    """(recipe V x k, basis k x C) with recipe @ basis the best rank-k approximation of the embedding
    (k = min(V, C) if not given): recipe = U_k Sigma_k, basis = V_k^T, so basis rows are orthonormal."""
    U, sigma, Vh = torch.linalg.svd(embedding.double(), full_matrices=False)
    k = sigma.numel() if rank is None else min(rank, sigma.numel())
    return (U[:, :k] * sigma[:k]).float(), Vh[:k].float()
