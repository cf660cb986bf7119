"""Metric definitions that check.py and the experiment suite share, so both report the same number.

Pure functions of tensors: importing this module pulls in neither the models nor the suite.
"""

import math

import torch

# An entry of a recipe counts as "relatively active" when its magnitude is at least this fraction of
# the largest in its row. Scale-free, but Gaussian rows of 256 already score about 76%: it describes,
# it does not show sparsity (experiment 2 tests Hoyer sparsity against rotated bases instead).
ACTIVE_FRACTION = 0.1


def effective_rank(matrix: torch.Tensor) -> float:
    """exp(entropy) of the normalized singular values (Roy and Vetterli, 2007): how many
    directions the matrix really spans, from 1 up to min(rows, columns)."""
    singular = torch.linalg.svdvals(matrix.double())
    p = singular / singular.sum()
    p = p[p > 0]
    return math.exp(-(p * p.log()).sum().item())


def active_mask(rows: torch.Tensor) -> torch.Tensor:
    """Which entries reach ACTIVE_FRACTION of their row's largest magnitude."""
    magnitude = rows.abs()
    return magnitude >= ACTIVE_FRACTION * magnitude.max(dim=-1, keepdim=True).values
