"""reFlow-topk: each recipe row passes through ReLU, then keeps only its k largest entries.

The mask is recomputed every forward from the current weights, so which signals a token uses can
change during training; gradient reaches only the kept, positive entries.
"""

import torch
import torch.nn.functional as F

from models.reflow import Reflow


class ReflowTopK(Reflow):
    def active_signals(self) -> int:
        return min(self.config.topk, self.config.n_signals)

    def effective_recipe(self) -> torch.Tensor:
        recipe = F.relu(self.recipe)  # (V, S)
        kept = torch.topk(recipe, self.active_signals(), dim=-1).indices  # (V, k)
        mask = torch.zeros_like(recipe).scatter_(-1, kept, 1.0)
        return recipe * mask  # zero, and zero gradient, outside the top k
