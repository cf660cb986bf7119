"""Where the explorer gets recipes and a signal basis from, on every architecture.

The recipe and signal views need a factorization of the vocab matrix, E (V, C) ~ recipes (V, S) @
basis (S, C). The reflow family has one natively (W_recipe, W_basis). gpt2 and gpt2-new have none;
a post-hoc factorization of their embedding (experiments/posthoc.py, from the studies work) plugs in
through `posthoc_factorization`, and until it returns one the page says why those views are off.
"""

from dataclasses import dataclass

import torch

from models import Transformer


@dataclass
class Factorization:
    recipes: torch.Tensor  # (V, S): row v is token v's recipe over the S signals
    basis: torch.Tensor  # (S, C): row s is signal s's direction in the residual stream
    source: str  # where it came from, shown in the page

    @property
    def n_signals(self) -> int:
        return self.basis.size(0)

    def signal_activations(self, h: torch.Tensor) -> torch.Tensor:
        """A state (..., C) read along every signal: a_s = h . basis_s, shape (..., S)."""
        return h @ self.basis.t()


def posthoc_factorization(model: Transformer) -> Factorization | None:
    """A post-hoc (recipes, basis) for a model without native recipes: the hook for
    experiments/posthoc.py's SVD / dictionary factorization. None while no such factorization exists."""
    return None


def factorization_of(model: Transformer, name: str) -> tuple[Factorization | None, str]:
    """The model's factorization and a sentence saying where it comes from or why there is none;
    `name` is the model's registry name (gpt2, reflow, ...)."""
    if model.has_recipes:
        native = Factorization(model.effective_recipe().detach().float(), model.basis.detach().float(),
                               "the model's own W_recipe and W_basis")
        return native, native.source
    posthoc = posthoc_factorization(model)
    if posthoc is not None:
        return posthoc, posthoc.source
    return None, (f"this {name} model has no recipes (its embedding is one V x C table), and no "
                  "post-hoc factorization of it is available yet, so recipe and signal views are off")
