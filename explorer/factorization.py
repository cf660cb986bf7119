"""Where the explorer gets recipes and a signal basis from, on every architecture.

The recipe and signal views need a factorization of the vocab matrix, E (V, C) ~ recipes (V, S) @
basis (S, C). The reflow family has one natively (W_recipe, W_basis). gpt2 and gpt2-new have none; as
in experiment.py, `--posthoc=svd` or `--posthoc=dictionary` reads them through a factorization of their
embedding cut after training (experiments/posthoc.py), and without it the page says why those views
are off.
"""

import torch

from core.config import Config
from experiments.posthoc import Factorization, factorize
from models import Transformer


def factorization_of(model: Transformer, name: str, cfg: Config,
                     rows: torch.Tensor | None = None) -> tuple[Factorization | None, str]:
    """The model's factorization and a sentence saying where it comes from or why there is none;
    `name` is the model's registry name (gpt2, reflow, ...), `rows` the tokens a dictionary codes."""
    factorization = factorize(model, cfg.posthoc, model.config.n_embd, cfg.posthoc_active_fraction,
                              cfg.seed, rows)
    if factorization is not None:
        return factorization, factorization.description.rstrip(".")  # a clause: the page punctuates it
    return None, (f"this {name} model has no recipes (its embedding is one V x C table), so recipe and "
                  "signal views are off; start with --posthoc=svd or --posthoc=dictionary to read it "
                  "through a post-hoc factorization of its embedding")
